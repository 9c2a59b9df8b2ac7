from __future__ import annotations

from collections import Counter

import pytest

from feedstock.stages.pii import PII_TYPES, PLACEHOLDERS, PiiRedactor, redact
from feedstock.stages.steps import Document, run_steps

# Token-shaped fixtures are assembled from pieces so secret scanners on the repository do not flag this file;
# they are fake (random characters in the documented formats).
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_KEY_2 = "ASIA" + "Y34FZKBOKMUTVV7A"
GITHUB_TOKEN = "ghp_" + "7Xq2Lm9Rt4Vw8Yz1Ab3Cd5Ef6Gh0Ij2Kl4Mn"
SLACK_TOKEN = "xoxb-" + "2048-1337-Zq9wX8vY7uT6sR5q"
ANTHROPIC_KEY = "sk-ant-" + "api03-Qw7Er9Ty1Ui3Op5As7Df9Gh1Jk3Lz"
STRIPE_KEY = "sk_live_" + "51HxYz2AbCdEfGh3IjKlMn4O"
GOOGLE_KEY = "AIza" + "SyD-9tSrke72PouQMnMX7Kf3zWqP8X_vLmA"
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM_BODY = (
    "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
)
PEM_BLOCK = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "-----END RSA PRIVATE KEY-----"

VISA = "4111 1111 1111 1111"
MASTERCARD = "5555-5555-5555-4444"
AMEX = "378282246310005"
IBAN_DE = "DE89 3704 0044 0532 0130 00"
IBAN_GB = "GB29NWBK60161331926819"

TICKET = f"""\
Subject: Re: [SUP-4821] Payment failing after password reset

Hi Dana,

Thanks for the logs. The customer (maria.gonzalez@example.com, cc finance-team+billing@acme.co.uk) says the
card ending in 1111 was declined. Full number from the form: {VISA}; their backup Mastercard {MASTERCARD}
and an Amex {AMEX} also bounced. Refund to {IBAN_DE} or, for the UK entity, {IBAN_GB}.
You can reach her on (555) 123-4567 or +44 20 7946 0958; the Berlin office is +49 30 1234567.

The worker at 192.168.10.24 talks to the gateway at 203.0.113.7 and over IPv6 to 2001:db8:85a3::8a2e:370:7334
(link-local fe80::1ff:fe23:4567:890a). It runs Python 3.11.7, release v2.10.3, deployed 2024-01-15.

Config dump from the pod (please rotate everything in it!):

    DB_PASSWORD=hunter2!x
    aws_access_key_id = {AWS_KEY}
    AWS_SESSION_KEY_ID={AWS_KEY_2}
    GITHUB_TOKEN: {GITHUB_TOKEN}
    slack_webhook_token = {SLACK_TOKEN}
    ANTHROPIC_API_KEY="{ANTHROPIC_KEY}"
    stripe = {STRIPE_KEY}
    maps = {GOOGLE_KEY}
    "password": "Tr0ub4dor&3"
    Authorization: Bearer {JWT}

{PEM_BLOCK}

Best,
Sam
"""

PLANTED = {
    "email": ["maria.gonzalez@example.com", "finance-team+billing@acme.co.uk"],
    "credit_card": [VISA, MASTERCARD, AMEX],
    "iban": [IBAN_DE, IBAN_GB],
    "phone": ["(555) 123-4567", "+44 20 7946 0958", "+49 30 1234567"],
    "ip_address": [
        "192.168.10.24",
        "203.0.113.7",
        "2001:db8:85a3::8a2e:370:7334",
        "fe80::1ff:fe23:4567:890a",
    ],
    "secret": [
        "hunter2!x",
        AWS_KEY,
        AWS_KEY_2,
        GITHUB_TOKEN,
        SLACK_TOKEN,
        ANTHROPIC_KEY,
        STRIPE_KEY,
        GOOGLE_KEY,
        "Tr0ub4dor&3",
        JWT,
        PEM_BLOCK,
    ],
}


def test_every_planted_value_is_redacted_with_exact_counts():
    out, counts = redact(TICKET)

    for kind, values in PLANTED.items():
        for value in values:
            assert value not in out, f"{kind} {value!r} survived"
        assert out.count(PLACEHOLDERS[kind]) == len(values), kind
    assert counts == Counter({kind: len(values) for kind, values in PLANTED.items()})
    # Fragments must go too, not just the exact planted string.
    for fragment in ("MIIEpAIBAAKCAQEA", "PRIVATE KEY", "4111", "NWBK", "7946", "8a2e", "hunter2"):
        assert fragment not in out, fragment


def test_structure_around_redactions_survives():
    out, _ = redact(TICKET)

    assert "Payment failing after password reset" in out
    assert "DB_PASSWORD=<SECRET>" in out
    assert '"password": "<SECRET>"' in out
    assert "aws_access_key_id = <SECRET>" in out
    assert "Authorization: Bearer <SECRET>" in out
    assert "reach her on <PHONE> or <PHONE>;" in out
    assert "Refund to <IBAN> or" in out
    assert "card ending in 1111 was declined" in out
    assert "Python 3.11.7, release v2.10.3, deployed 2024-01-15." in out


@pytest.mark.parametrize(
    "text",
    [
        "Luhn-invalid test number 4111 1111 1111 1112 and 4111111111111112.",
        "IBAN with a wrong check digit: DE89 3704 0044 0532 0130 01",
        "Built with Python 3.11.7 from release v2.10.3 (build 1.2.3, nightly 1.2.3.4.5).",
        "Due 2024-01-15, or 15/01/2024, or 01-15-2024 at 10:30:00.",
        "Revenue grew in 2023 and again in the 2024 fiscal year.",
        "The laptop costs $1,299.00 (was €1.499,00); 12,345,678 units shipped.",
        "Your order #12345 and order number 1234567 have shipped; ticket #4821337.",
        "Click the password reset link; the secret to success is a good token budget.",
        "Password: reset it from the settings page.",
        "api_key = os.environ['API_KEY']; password=${DB_PASSWORD}; token: <TOKEN>",
        'tokenizer = AutoTokenizer.from_pretrained(name); max_tokens=512; "eos_token": "</s>"',
        "C++ std::vector<int> v; Rust Foo::bar(); x[1::2]; Face::Add",
        "Loopback: listen on 127.0.0.1:8000, 0.0.0.0 or [::1]:8000.",
        'secret=self.secret; {"token": load_token, "password": os.environ["PW"]}',
        "Timestamp 1700000000000 ms, MAC 00:1A:2B:3C:4D:5E, user@2x.png icon",
        "Coordinates 52.5200, 13.4050; pi is 3.14159265358979.",
    ],
)
def test_lookalikes_are_left_alone(text):
    out, counts = redact(text)

    assert out == text
    assert counts == Counter()


def test_truncated_pem_block_does_not_swallow_text_up_to_a_later_block():
    truncated = (
        "-----BEGIN EC "
        + "PRIVATE KEY-----\n"
        + "MHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n"
    )
    text = f"{truncated}\nThe rest of the message stays.\n\n{PEM_BLOCK}\n"

    out, counts = redact(text)

    assert out == "<SECRET>\n\nThe rest of the message stays.\n\n<SECRET>\n"
    assert counts == Counter({"secret": 2})


def test_mistyped_iban_is_not_shredded_by_card_or_phone_detectors():
    text = "Pay to GB29 NWBK 6016 1331 9268 18 please."  # last digit off by one

    assert redact(text) == (text, Counter())


def test_card_followed_by_cvv_and_iban_followed_by_word():
    out, counts = redact(f"card {VISA} 123, iban ES91 2100 0418 4502 0005 1332 THEN done")

    assert out == "card <CREDIT_CARD> 123, iban <IBAN> THEN done"
    assert counts == Counter({"credit_card": 1, "iban": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call 555-123-4567.", "call <PHONE>."),
        ("fax 555.123.4567", "fax <PHONE>"),
        ("UK 020 7946 0958, DE (030) 1234567", "UK <PHONE>, DE <PHONE>"),
        ("server http://10.0.0.1:8080/health", "server http://<IP_ADDRESS>:8080/health"),
        ("bind [2001:db8::1]:443 and 10.20.30.40", "bind [<IP_ADDRESS>]:443 and <IP_ADDRESS>"),
        ("not an ip: 256.1.1.1 or 10.0.0", "not an ip: 256.1.1.1 or 10.0.0"),
        ("postgres://admin:s3cr3t@db.internal:5432/app", "postgres://admin:<SECRET>@db.internal:5432/app"),
        ("export OPENAI_API_KEY=sk-proj-abc123def456ghi789jkl0", "export OPENAI_API_KEY=<SECRET>"),
        ("https://x.test/cb?token=a1b2c3d4&page=2", "https://x.test/cb?token=<SECRET>&page=2"),
        ("GET /api?access_token=ya29.a0AfH6SMBx&user=1", "GET /api?access_token=<SECRET>&user=1"),
        ("Username: bob\nPassword: hunter2", "Username: bob\nPassword: <SECRET>"),
    ],
)
def test_single_detections(text, expected):
    assert redact(text)[0] == expected


def test_types_filter_only_redacts_requested_types():
    out, counts = redact(TICKET, types=["email"])

    assert counts == Counter({"email": 2})
    assert "<EMAIL>" in out
    for kind, values in PLANTED.items():
        if kind != "email":
            assert all(value in out for value in values), kind
    assert redact("mail a@b.io", types="email") == ("mail <EMAIL>", Counter({"email": 1}))


def test_unknown_type_is_rejected_by_name():
    with pytest.raises(ValueError, match="'ssn'"):
        PiiRedactor(types=["email", "ssn"])
    with pytest.raises(ValueError, match="'passport'"):
        redact("x", types=["passport"])


def test_redactor_step_rewrites_text_counts_and_keeps_document():
    doc = Document("d1", "tickets", TICKET)
    stats: Counter = Counter()

    assert PiiRedactor().process(doc, stats) is None

    expected = {kind: len(values) for kind, values in PLANTED.items()}
    assert doc.meta["pii"] == expected
    assert stats == Counter({f"pii:{kind}": n for kind, n in expected.items()})
    assert "maria.gonzalez@example.com" not in doc.text and "<EMAIL>" in doc.text
    assert PiiRedactor.stage == "pii"


def test_redactor_step_in_pipeline_with_clean_document():
    docs = [Document("a", "s", "Nothing to see here."), Document("b", "s", "mail bob@example.org now")]
    stats: dict[str, Counter] = {}
    drops: list = []

    kept = list(run_steps(docs, [PiiRedactor(types=["email", "phone"])], stats, drops))

    assert [d.text for d in kept] == ["Nothing to see here.", "mail <EMAIL> now"]
    assert [d.meta["pii"] for d in kept] == [{}, {"email": 1}]
    assert drops == []
    assert stats["pii"] == Counter({"in": 2, "out": 2, "pii:email": 1})


def test_placeholders_and_empty_input():
    assert set(PLACEHOLDERS) == set(PII_TYPES)
    assert PLACEHOLDERS["ip_address"] == "<IP_ADDRESS>"
    assert redact("") == ("", Counter())
    assert redact("hello", types=[]) == ("hello", Counter())


def test_every_ip_match_holds_the_hint_that_lets_a_text_skip_the_scan():
    import random

    from feedstock.stages import pii

    rng = random.Random(5)
    pieces = "1 12 255 256 0 ٣ . . : : :: a fe80 DB8 %eth0 x".split() + [" "]
    matched = {"v4": 0, "v6": 0}
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(3, 30)))
        dotted = ".".join(rng.choice(pieces[:6]) for _ in range(rng.randint(3, 5)))
        at = rng.randint(0, len(text))
        text = text[:at] + rng.choice(["", " "]) + dotted + rng.choice(["", " ", "."]) + text[at:]
        for kind, pattern, hint in (("v4", pii._IPV4, pii._IPV4_HINT), ("v6", pii._IPV6, pii._IPV6_HINT)):
            for m in pattern.finditer(text):
                assert hint.search(m.group()), (kind, m.group())
                matched[kind] += 1
    assert min(matched.values()) > 100
