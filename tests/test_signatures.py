"""MercadoPago x-signature verification."""

import pytest

from webhooks_app.signatures import (
    SignatureError,
    build_manifest,
    compute_signature,
    parse_signature_header,
    sign,
    verify_signature,
)

# The values of MercadoPago's documentation example (ts, request id, data.id);
# the expected digests were computed with `openssl dgst -sha256 -hmac`, not with this code.
SECRET = "your_secret_key_here"
TS = "1704908010"
REQUEST_ID = "bb56a2f1-6aae-46ac-982e-9dcd3581d08e"
DATA_ID = "123456"
EXPECTED_V1 = "637a6ba61396d5572b508ee7a1b81458dea7c6f275af3273b6d76e15e17b7918"


def test_manifest_matches_the_documented_template():
    assert build_manifest(DATA_ID, REQUEST_ID, TS) == (
        "id:123456;request-id:bb56a2f1-6aae-46ac-982e-9dcd3581d08e;ts:1704908010;"
    )


def test_known_answer_from_openssl():
    assert compute_signature(SECRET, DATA_ID, REQUEST_ID, TS) == EXPECTED_V1
    verify_signature(SECRET, f"ts={TS},v1={EXPECTED_V1}", REQUEST_ID, DATA_ID)


def test_alphanumeric_data_id_is_lower_cased_and_missing_parts_left_out():
    assert build_manifest("ABC123DEF", None, TS) == "id:abc123def;ts:1704908010;"
    # openssl: printf 'id:abc123def;ts:1704908010;' | openssl dgst -sha256 -hmac …
    expected = "05fb58bc4a1e605f8dc0c60306bf0ceaaad33415c81ab3ff96c321cd11e94e4b"
    verify_signature(SECRET, f"ts={TS},v1={expected}", None, "ABC123DEF")


def test_non_alphanumeric_data_id_keeps_its_case():
    assert build_manifest("Ab-1", None, None) == "id:Ab-1;"


def test_header_with_spaces_and_upper_case_hex_is_accepted():
    verify_signature(SECRET, f" ts={TS} , v1={EXPECTED_V1.upper()} ", REQUEST_ID, DATA_ID)


@pytest.mark.parametrize(
    ("header", "request_id", "data_id"),
    [
        (None, REQUEST_ID, DATA_ID),
        ("", REQUEST_ID, DATA_ID),
        (f"ts={TS}", REQUEST_ID, DATA_ID),
        (f"v1={EXPECTED_V1}", REQUEST_ID, DATA_ID),
        ("garbage", REQUEST_ID, DATA_ID),
        (f"ts={TS},v1={EXPECTED_V1}", REQUEST_ID, "123457"),  # other payment
        (f"ts={TS},v1={EXPECTED_V1}", "other-request", DATA_ID),
        (f"ts=1704908011,v1={EXPECTED_V1}", REQUEST_ID, DATA_ID),  # other time
        (f"ts={TS},v1={EXPECTED_V1[:-1]}0", REQUEST_ID, DATA_ID),
    ],
)
def test_rejected(header, request_id, data_id):
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, request_id, data_id)


def test_wrong_secret_rejected():
    with pytest.raises(SignatureError):
        verify_signature("another-secret", f"ts={TS},v1={EXPECTED_V1}", REQUEST_ID, DATA_ID)


def test_sign_round_trips():
    header = sign(SECRET, DATA_ID, REQUEST_ID, ts=int(TS))
    assert parse_signature_header(header) == (TS, EXPECTED_V1)
