"""A postern process that runs only the remote fetch scheduler (settings from the
environment, POSTERN_*): what the kill -9 test starts and kills."""

from __future__ import annotations

import asyncio

from postern.config import Settings
from postern.delivery import queue_owner
from postern.serve.runtime import Runtime


async def main() -> None:
    settings = Settings()
    runtime = Runtime.build(settings)
    await runtime.start()
    owner = queue_owner.acquire(settings.data_dir, "remote-owner")
    try:
        await runtime.remote_scheduler.run(owner.id, owner.exclusive)
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
