"""Identifiers a border lane really sees, derived from an index and a seed, without state.

Every identifier is a pure function of `(seed, index)`, so a million-driver cache can be
streamed without remembering what was handed out, and a benchmark can rebuild the
tags of trip 123,456 without loading the cache. Tag EPCs are unique per kind by
construction (a bijective scramble of the index), and the three kinds never collide
because their headers differ: driver cards carry a bare 96-bit reference number (no
personal data, deliberately not a GS1 encoding), truck transponders are GS1 GIAI-96
and trailer tags GS1 GRAI-96, as fleet asset tags usually are.
"""

from __future__ import annotations

import random
from functools import lru_cache

CARD_HEADER = 0xA5  # outside the GS1 header table: decoders give no epc_uri for a card
CARD_ISSUER = 0x0F4A57  # the issuing programme's 24-bit prefix on every card
GIAI96_HEADER, GRAI96_HEADER = 0x34, 0x33
PARTITION_7_DIGITS = 5  # GS1 partition value for a 7-digit company prefix
TRANSPONDER_PREFIX = 952017  # issuer of the truck transponders (a 7-digit GS1 company prefix)
TRAILER_PREFIX = 952018  # issuer of the trailer tags
TRAILER_ASSET_TYPE = 53000  # GRAI asset type: 53-foot dry van

MASK_64 = (1 << 64) - 1


def scramble(index: int, bits: int, seed: int, salt: int) -> int:
    """A bijection on `bits`-bit integers: distinct indexes give distinct, random-looking numbers.

    Multiplying by an odd constant, xor-shifting and xoring a seed-derived mask are each
    invertible modulo 2**bits, so their composition is too.
    """
    mask = (1 << bits) - 1
    if not 0 <= index <= mask:
        raise ValueError(f"index {index} does not fit in {bits} bits")
    key = _scramble_key(seed, salt, bits)
    x = (index * 0x9E3779B97F4A7C15) & mask
    x ^= x >> (bits // 2)
    x = (x * 0xBF58476D1CE4E5B9) & mask
    return x ^ key


@lru_cache(maxsize=64)
def _scramble_key(seed: int, salt: int, bits: int) -> int:
    return random.Random(f"{seed}/{salt}").getrandbits(bits)


def card_epc(seed: int, index: int) -> str:
    """The driver's border-crossing card: header, issuer prefix, 64-bit reference number."""
    return f"{CARD_HEADER:02X}{CARD_ISSUER:06X}{scramble(index, 64, seed, 1):016X}"


def transponder_epc(seed: int, index: int) -> str:
    """The truck's windshield transponder as GIAI-96 (filter 0, 7-digit prefix, 58-bit asset)."""
    value = ((GIAI96_HEADER << 88) | (PARTITION_7_DIGITS << 82) | (TRANSPONDER_PREFIX << 58)
             | scramble(index, 58, seed, 2))
    return f"{value:024X}"


def trailer_epc(seed: int, index: int) -> str:
    """A trailer's tag as GRAI-96 (filter 0, 7-digit prefix, 5-digit asset type, 38-bit serial)."""
    value = ((GRAI96_HEADER << 88) | (PARTITION_7_DIGITS << 82) | (TRAILER_PREFIX << 58)
             | (TRAILER_ASSET_TYPE << 38) | scramble(index, 38, seed, 3))
    return f"{value:024X}"


# --- VINs -------------------------------------------------------------------------------
# Heavy-truck world manufacturer identifiers (Freightliner, Kenworth, Peterbilt, Volvo,
# Mack, International, Western Star).
TRUCK_WMIS = ("1FU", "3AK", "1XK", "1XP", "4V4", "1M1", "3HS", "5KJ")
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # I, O and Q are never used
VIN_VALUES = dict(zip("ABCDEFGH", range(1, 9))) | dict(zip("JKLMN", range(1, 6))) | {"P": 7, "R": 9} \
    | dict(zip("STUVWXYZ", range(2, 10))) | {str(d): d for d in range(10)}
VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
MODEL_YEARS = "FGHJKLMNPRS"  # 2015 .. 2025


def vin_check_digit(vin17: str) -> str:
    """ISO 3779 / 49 CFR 565 check digit (position 9) of a VIN."""
    total = sum(VIN_VALUES[c] * w for c, w in zip(vin17, VIN_WEIGHTS))
    return "X" if total % 11 == 10 else str(total % 11)


def vin(rng: random.Random) -> str:
    """A well-formed 17-character truck VIN with a correct check digit."""
    body = (rng.choice(TRUCK_WMIS) + "".join(rng.choice(VIN_CHARS) for _ in range(5)) + "0"
            + rng.choice(MODEL_YEARS) + rng.choice("ABCDEFGHJKLNPRS") + f"{rng.randrange(1_000_000):06d}")
    return body[:8] + vin_check_digit(body) + body[9:]


# --- plates -----------------------------------------------------------------------------
# Per region: L = letter, D = digit (formats close to the real commercial plates).
PLATE_FORMATS = {
    "ON": "LLDDDDD", "QC": "LDDDDDD", "MB": "LLLDDD", "AB": "LLDDDDD", "BC": "LDDDDDD",
    "MI": "LLDDDDD", "OH": "LLLDDDD", "IL": "DDDDDDL", "IN": "DDDDDDL", "TX": "LLDDDDD",
    "NY": "LLDDDDD", "PA": "LLDDDDD",
}
CA_REGIONS = ("ON", "ON", "ON", "QC", "QC", "MB", "AB", "BC")  # weighted by traffic
US_REGIONS = ("MI", "MI", "OH", "IL", "IN", "TX", "NY", "PA")


def plate(rng: random.Random, region: str) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(rng.choice(letters) if c == "L" else str(rng.randrange(10)) for c in PLATE_FORMATS[region])


# --- people, companies, goods ----------------------------------------------------------
FIRST_NAMES = (
    "Gurpreet", "Jean", "Michael", "Maria", "Harjit", "Luc", "David", "Sarah", "Jose", "Amandeep",
    "Robert", "Isabelle", "James", "Daniel", "Mandeep", "Patrick", "Karen", "Sylvain", "Juan",
    "Olena", "Kevin", "Nathalie", "Brian", "Rajinder", "Steven", "Chantal", "Thomas", "Ana",
)
LAST_NAMES = (
    "Singh", "Tremblay", "Smith", "Gill", "Gagnon", "Johnson", "Roy", "Brown", "Sandhu", "Cote",
    "Williams", "Garcia", "Martin", "Dhillon", "Bouchard", "Miller", "Kowalski", "Lavoie", "Davis",
    "Nguyen", "Wilson", "Pelletier", "Grewal", "Anderson", "Hernandez", "Morin", "Taylor", "Kovalenko",
)
COMPANY_WORDS = (
    "Northern", "Great Lakes", "Maple", "Prairie", "Atlantic", "Summit", "Keystone", "Riverside",
    "Lakeshore", "Frontier", "Heartland", "Pioneer", "Cascade", "Laurentian", "Buckeye", "Huron",
)
COMPANY_TRADES = ("Steel", "Foods", "Plastics", "Paper", "Auto Parts", "Lumber", "Produce", "Packaging",
                  "Chemicals", "Furniture", "Electronics", "Meats")
COMPANY_SUFFIXES = ("Inc.", "Ltd.", "LLC", "Corp.", "Ltee", "Co.")
GOODS = (
    "automotive parts, 22 pallets", "frozen pork cuts, 40,000 lb", "SPF lumber, 2x4 kiln dried",
    "hot-rolled steel coils", "fresh tomatoes, 1,800 cases", "polyethylene resin in bags",
    "newsprint rolls", "flat-pack furniture", "consumer electronics, 18 pallets", "canned soup",
    "aluminum ingots", "tires, passenger, 640 units", "beer in kegs", "corrugated boxes, flat",
)


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def company_name(rng: random.Random) -> str:
    return f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_TRADES)} {rng.choice(COMPANY_SUFFIXES)}"


def carrier_code(index: int) -> str:
    """A four-letter carrier code (SCAC style) for carrier number `index`; distinct per index."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    code = ""
    x = scramble(index, 18, 0, 4)  # 2**18 < 26**4: distinct for the first 262,144 carriers
    for _ in range(4):
        x, r = divmod(x, 26)
        code = letters[r] + code
    return code


def seal_number(rng: random.Random) -> str:
    """An ISO 17712 high-security bolt seal: manufacturer prefix and serial."""
    return f"{rng.choice(('TYD', 'ESL', 'CGS', 'UNI'))}{rng.randrange(10_000_000):07d}"
