"""What is public on the HTTP door besides the APIs: the mail clients' automatic
set-up (Thunderbird's autoconfig, Outlook's autodiscover, an Apple profile), the
MTA-STS policy, a front page and the API documentation at /docs (its assets served
from here: no internet needed).

Autoconfig answers only for hosted domains; none of these documents says whether an
address exists (the login is the address itself, and no password is ever in them).
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

from postern import __version__
from postern.accounts.addressing import normalise_address, normalise_domain
from postern.accounts.application_passwords import mail_client_settings, mobileconfig_plist
from postern.domains import autoconfig
from postern.domains.records import mta_sts_policy
from postern.errors import InvalidInput
from postern.http.admin.common import RuntimeDep
from postern.http.errors import error_response

router = APIRouter(include_in_schema=False)

EmailQuery = Annotated[str | None, Query(max_length=320)]

# The API documents /docs shows (the identity service documents its own paths).
DOCUMENTS = (("Admin and user APIs", "/openapi.json"), ("Identity service", "/_matrix/identity/openapi.json"))
DOCS_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"


async def _hosted_domain(runtime: RuntimeDep, request: Request, emailaddress: str | None) -> tuple[str, str | None]:
    """The domain asked about, (ASCII form, the address if one was given): from the
    address, else from the host name the client used (autoconfig.<domain>)."""
    if emailaddress:
        address = normalise_address(emailaddress, "emailaddress")
        domain = address.key.rsplit("@", 1)[1]
        email: str | None = address.display
    else:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        for prefix in ("autoconfig.", "autodiscover."):
            host = host.removeprefix(prefix)
        domain, email = normalise_domain(host, "host")[0], None
    entry = await runtime.hosted_domains.get(domain)  # NotFound: 404 for other domains
    return entry.domain, email


@router.get("/.well-known/autoconfig/mail/config-v1.1.xml")
@router.get("/mail/config-v1.1.xml")
async def thunderbird_autoconfig(request: Request, runtime: RuntimeDep, emailaddress: EmailQuery = None) -> Response:
    domain, _email = await _hosted_domain(runtime, request, emailaddress)
    body = autoconfig.thunderbird(runtime.settings, domain, runtime.settings.hostname)
    return Response(body, media_type="application/xml")


@router.post("/autodiscover/autodiscover.xml")
@router.post("/Autodiscover/Autodiscover.xml")
async def outlook_autodiscover(request: Request, runtime: RuntimeDep) -> Response:
    try:
        address = autoconfig.autodiscover_address(await request.body())
    except autoconfig.BadAutodiscoverRequest as error:
        return error_response(400, f"Invalid autodiscover request: {error}", "InputValidationError")
    _domain, email = await _hosted_domain(runtime, request, address)
    return Response(autoconfig.outlook(runtime.settings, email or address, runtime.settings.hostname), media_type="application/xml")


@router.get("/mobileconfig")
async def apple_profile(request: Request, runtime: RuntimeDep, emailaddress: EmailQuery = None) -> Response:
    """An Apple configuration profile for one address (no password: the device asks)."""
    if not emailaddress:
        raise InvalidInput("emailaddress is required", field="emailaddress")
    _domain, email = await _hosted_domain(runtime, request, emailaddress)
    assert email is not None
    body = mobileconfig_plist(
        mail_client_settings(runtime.settings),
        username=email,
        address=email,
        display_name=email,
        password=None,
        description=f"Mail at {runtime.settings.hostname}",
    )
    filename = email.split("@", 1)[0].encode("ascii", "replace").decode().replace("?", "_") or "mail"
    return Response(
        body,
        media_type="application/x-apple-aspen-config",
        headers={"Content-Disposition": f'attachment; filename="{filename}.mobileconfig"'},
    )


@router.get("/.well-known/mta-sts.txt")
async def mta_sts(runtime: RuntimeDep) -> Response:
    return PlainTextResponse(mta_sts_policy(runtime.settings))


@router.get("/")
async def front_page(runtime: RuntimeDep) -> HTMLResponse:
    host = escape(runtime.settings.hostname)
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>postern {__version__}</title></head><body>"
        f"<h1>postern at {host}</h1><p>A self-hosted mail server, version {escape(__version__)}.</p>"
        '<ul><li><a href="/docs">API documentation</a></li><li><a href="/health">health</a></li></ul></body></html>'
    )


def _docs_page() -> str:
    urls = ",".join(f'{{"name": "{name}", "url": "{url}"}}' for name, url in DOCUMENTS)
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>postern API documentation</title>"
        '<link rel="stylesheet" href="/docs/static/swagger-ui.css">'
        '<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png"></head>'
        f"<body><div id=\"swagger-ui\" data-urls='[{urls}]'></div>"
        '<script src="/docs/static/swagger-ui-bundle.js"></script>'
        '<script src="/docs/init.js"></script></body></html>'
    )


# Outside the page, so that the page's policy needs no inline script.
DOCS_INIT = """
const urls = JSON.parse(document.getElementById("swagger-ui").dataset.urls);
window.ui = SwaggerUIBundle({urls: urls, dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
"""


@router.get("/docs")
async def docs() -> HTMLResponse:
    return HTMLResponse(_docs_page(), headers={"Content-Security-Policy": DOCS_POLICY})


@router.get("/docs/init.js")
async def docs_init() -> Response:
    return Response(DOCS_INIT, media_type="text/javascript")


def install(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.include_router(router)
    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")
