"""Words for generated alias addresses: random aliases (``two_words123``, or a uuid4),
the random part of a custom alias's suffix (``.word123``, or ``.x7k2q``).

Only lowercase ASCII letters, so every generated part is a valid, case-insensitive
local part. Randomness comes from ``secrets``: an alias is not meant to be guessed."""

from __future__ import annotations

import secrets
import string
import uuid

_WORDS = """
able acid aged also area army away baby back bake ball band bank barn base bath bean
bear beat bell belt bench berry bike bird blank blue boat body bold bone book boot
bowl brave bread brick bridge brief bright brown brush cabin cable cake calm camel
camp candy cane canoe cape card care cargo carpet carrot cart case castle cedar chain
chalk charm chart chess chief chip cider city clay clean clear cliff clock cloud coal
coast coat cocoa code coin cold comet coral corn cosy cotton couch crane cream creek
crisp crow crown cube curve cycle daisy dance dawn deer delta desk dial diner dolphin
dome door dove dream drift drum duck dune eagle early earth echo eight elbow elder
ember empty epic even fable fair falcon fancy farm feast fern ferry field final fire
firm fish flag flame flash fleet flint float flute foam focus fog forest fork fossil
fox frame fresh frog frost fruit gale garden gecko gem gentle ghost giant ginger glad
glass glide globe glove goat gold good goose grain grape grass gravel green grid grove
guide gull habit hall happy harbor hawk hazel heart hedge helmet herb heron hill hive
honey hook horse hotel house husky icon igloo inch ink iris iron island ivory ivy
jacket jade jam jar jazz jelly jewel jolly judge juice jungle kayak kettle key kind
king kite kiwi knot koala lace ladder lake lamp lantern large lark laser lava lawn
leaf lemon level light lilac lily lime linen lion little lizard llama lobby local
lodge lotus lucky lunar lunch magic maple marble market marsh meadow melon merry
metal meteor mild mill mint mirror mist model moon moose moss motor mountain mouse
music nest night noble north novel oak oasis ocean olive onion opal orange orbit
orchid otter owl oyster paddle paint palm panda paper park parrot pasta peach pearl
pebble pepper piano pilot pine pixel planet plaza plum polar pond poppy pretty prism
pumpkin puzzle quail quartz quick quiet quill rabbit radar radio rain ranch raven
reef ribbon ridge river road robin rocket rose ruby rustic saddle sage sail salmon
sand satin scarf scout seal season seed shadow shell shore silk silver simple sky
slate sleek smart smooth snow solar sonic spark spice spring spruce square stable
star steam stone storm straw stream sugar summer sun swan sweet swift table tango
teal tent thistle thunder tidy tiger timber toast topaz torch tower trail tree tulip
tundra turtle twig umber union unity urban valley velvet vine violet vivid voyage
wagon walnut warm wave wheat whale willow wind wise wolf wood world yacht yarn yellow
yoga young zebra zest zinc zone
""".split()

WORDS: tuple[str, ...] = tuple(dict.fromkeys(w for w in _WORDS if w.isascii() and w.isalpha() and w.islower()))
_STRING_ALPHABET = string.ascii_lowercase + string.digits


def random_word() -> str:
    return secrets.choice(WORDS)


def _digits() -> str:
    """2 or 3 random digits."""
    return str(secrets.randbelow(990) + 10)


def word_suffix() -> str:
    """The random part of an operator domain's suffix: ``.word123``."""
    return f".{random_word()}{_digits()}"


def string_suffix(length: int = 5) -> str:
    """The random part of a suffix for users who chose random strings: ``.x7k2q``."""
    return "." + "".join(secrets.choice(_STRING_ALPHABET) for _ in range(length))


def plain_word_suffix() -> str:
    """The random part of a custom domain's suffix (random prefix generation): ``.word``."""
    return f".{random_word()}"


def word_local() -> str:
    """A word-mode random alias's local part: ``two_words123``."""
    return f"{random_word()}_{random_word()}{_digits()}"


def uuid_local() -> str:
    """A uuid-mode random alias's local part: a uuid4."""
    return str(uuid.uuid4())
