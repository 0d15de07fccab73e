"""Realistic, reproducible contacts (and the accounts they belong to), built as plain row dicts so
100k rows take a couple of seconds. Only reserved example domains and fictional phone ranges are used."""

from __future__ import annotations

import random
import unicodedata
import uuid
from datetime import datetime, timedelta


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words("""
    James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan
    Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Margaret Paul
    Sandra Steven Ashley Andrew Emily Joshua Donna Kenneth Michelle Kevin Carol Brian Amanda George Melissa
    Timothy Deborah Oliver Amelia Harry Isla Jack Ava Noah Mia Leo Freya Oscar Lily Arthur Grace Louis Chloé
    Hugo Léa Lukas Emma Jonas Hannah Felix Lena Mateo Sofía Lucía Pablo Giulia Marco Sakura Haruto Wei Mei
    Arjun Priya Aisha Omar Fatima Yusuf Zoë Siobhán Seán Niamh Björn Åsa Renée José François Chiara Mohammed
    Ingrid Kwame Ngozi
""")
LAST_NAMES = _words("""
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson
    Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis
    Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall
    Rivera Campbell Mitchell Carter Roberts Müller Schmidt Schneider Fischer Weber Dubois Lefèvre Moreau
    Laurent Rossi Russo Ferrari Esposito Bianchi Fernández González Rodríguez Silva Santos Oliveira Kowalski
    Nowak Novák Jensen Hansen Larsen Johansson Andersson Nieminen O'Brien O'Connor Murphy Kelly Byrne
    MacDonald Sato Suzuki Tanaka Wang Li Zhang Chen Kim Park Singh Patel Khan Ali Okafor Mensah
""")
# (city, state or province, country, postal code pattern: 9 = digit, A = letter)
PLACES = (
    ("London", "England", "United Kingdom", "EC1A 9AA"),
    ("Manchester", "England", "United Kingdom", "M1 9AA"),
    ("Edinburgh", "Scotland", "United Kingdom", "EH1 9AA"),
    ("Dublin", "Leinster", "Ireland", "D09 A9A9"),
    ("Paris", "Île-de-France", "France", "750999"),
    ("Lyon", "Auvergne-Rhône-Alpes", "France", "69999"),
    ("Berlin", "Berlin", "Germany", "10999"),
    ("Munich", "Bavaria", "Germany", "80999"),
    ("Madrid", "Madrid", "Spain", "28999"),
    ("Barcelona", "Catalonia", "Spain", "08999"),
    ("Milan", "Lombardy", "Italy", "20999"),
    ("Amsterdam", "North Holland", "Netherlands", "1099 AA"),
    ("Stockholm", "Stockholm", "Sweden", "111 99"),
    ("Oslo", "Oslo", "Norway", "0999"),
    ("New York", "NY", "United States", "10099"),
    ("Seattle", "WA", "United States", "98199"),
    ("Austin", "TX", "United States", "78799"),
    ("Chicago", "IL", "United States", "60699"),
    ("Toronto", "ON", "Canada", "M5V 9A9"),
    ("Sydney", "NSW", "Australia", "2099"),
)
STREETS = (
    "High Street",
    "Station Road",
    "Main Street",
    "Church Lane",
    "Park Avenue",
    "Rue de la Paix",
    "Hauptstraße",
    "Calle Mayor",
    "Via Roma",
    "Maple Drive",
    "Oak Lane",
    "Harbour View",
    "Mill Road",
)
COMPANY_WORDS = (
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Adventure Works",
    "Tailspin",
    "Wingtip",
    "Litware",
    "Proseware",
    "Woodgrove",
    "Alpine Ski House",
    "Coho",
    "Fourth Coffee",
    "Lucerne",
    "Margie's Travel",
    "Trey Research",
    "Wide World Importers",
    "Blue Yonder",
    "City Power & Light",
    "Humongous",
    "Relecloud",
)
COMPANY_SUFFIXES = ("Ltd", "Inc", "GmbH", "SARL", "S.p.A.", "Group", "Partners", "Holdings", "BV", "AB")
DOMAINS = ("example.com", "example.org", "example.net")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _postal(pattern: str, rng: random.Random) -> str:
    return "".join(
        str(rng.randint(0, 9)) if c == "9" else rng.choice("ABDEFGHJLNPRSTUWXYZ") if c == "A" else c
        for c in pattern
    )


def _phone(country: str, rng: random.Random) -> str:
    if country == "United Kingdom":
        return f"+44 20 7946 0{rng.randint(0, 999):03d}"  # Ofcom's drama range
    if country in ("United States", "Canada"):
        return f"+1 555-01{rng.randint(0, 99):02d}"  # reserved fictional numbers
    return f"+{rng.choice((33, 49, 34, 39, 31, 46, 47, 61, 353))} 555 {rng.randint(100000, 999999)}"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def accounts(count: int, rng: random.Random, now: datetime, owner: tuple[str, str]) -> list[tuple[str, dict]]:
    rows = []
    for number in range(count):
        created = (now - timedelta(days=rng.randint(400, 2000))).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)}"
        if number >= len(COMPANY_WORDS):
            name = f"{name} {number}"
        account_id = _guid(rng)
        rows.append(
            (
                account_id,
                {
                    "accountid": account_id,
                    "name": name,
                    "statecode": 0,
                    "statuscode": 1,
                    "createdon": created,
                    "modifiedon": created,
                    "createdby": owner,
                    "modifiedby": owner,
                    "ownerid": owner,
                },
            )
        )
    return rows


def contacts(
    count: int, rng: random.Random, now: datetime, owner: tuple[str, str], account_ids: list[str]
) -> list[tuple[str, dict]]:
    """Contacts with unique e-mail addresses; ~5% inactive, ~40% linked to an account."""
    rows = []
    base = now - timedelta(days=3 * 365)
    span = 3 * 365 * 86400
    for number in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, state, country, postal = rng.choice(PLACES)
        created_at = base + timedelta(seconds=rng.randrange(span))
        modified_at = min(now, created_at + timedelta(seconds=rng.randrange(200 * 86400)))
        created = created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        inactive = rng.random() < 0.05
        contact_id = _guid(rng)
        row = {
            "contactid": contact_id,
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": f"{_ascii(first)}.{_ascii(last)}{number}@{DOMAINS[number % 3]}",
            "telephone1": _phone(country, rng),
            "address1_line1": f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
            "address1_city": city,
            "address1_stateorprovince": state,
            "address1_postalcode": _postal(postal, rng),
            "address1_country": country,
            "birthdate": f"{rng.randint(1940, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "donotemail": rng.random() < 0.05,
            "donotbulkemail": rng.random() < 0.12,
            "donotphone": rng.random() < 0.04,
            "donotpostalmail": rng.random() < 0.03,
            "donotfax": rng.random() < 0.5,
            "statecode": 1 if inactive else 0,
            "statuscode": 2 if inactive else 1,
            "createdon": created,
            "modifiedon": modified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "createdby": owner,
            "modifiedby": owner,
            "ownerid": owner,
        }
        if rng.random() < 0.6:
            row["mobilephone"] = _phone(country, rng)
        gender = rng.random()
        if gender < 0.9:
            row["gendercode"] = 1 if gender < 0.45 else 2
        if rng.random() < 0.1:
            row["address1_line2"] = f"Flat {rng.randint(1, 40)}"
        if account_ids and rng.random() < 0.4:
            row["parentcustomerid"] = ("account", rng.choice(account_ids))
        rows.append((contact_id, row))
    return rows
