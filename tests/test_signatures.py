"""MercadoPago x-signature verification."""

import hashlib
import hmac

import pytest

from webhooks_app.signatures import (
    SignatureError,
    build_manifest,
    compute_signature,
    parse_secrets,
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


def test_several_secrets_return_the_index_that_matched():
    header = f"ts={TS},v1={EXPECTED_V1}"
    assert verify_signature(SECRET, header, REQUEST_ID, DATA_ID) == 0
    assert verify_signature(f"new-secret,{SECRET}", header, REQUEST_ID, DATA_ID) == 1
    assert verify_signature(["new-secret", " ", SECRET], header, REQUEST_ID, DATA_ID) == 1
    with pytest.raises(SignatureError):
        verify_signature("new-secret,older-secret", header, REQUEST_ID, DATA_ID)
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_signature(" , ", header, REQUEST_ID, DATA_ID)


def test_parse_secrets_and_sign_with_the_first():
    assert parse_secrets(" new , old ,") == ("new", "old")
    assert parse_secrets(None) == ()
    assert sign(f"{SECRET},old", DATA_ID, REQUEST_ID, ts=int(TS)) == f"ts={TS},v1={EXPECTED_V1}"


ORDER_ID = "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3"


@pytest.mark.parametrize("lower", [True, False])
def test_upper_case_id_accepted_signed_lower_cased_or_as_received(lower):
    # The guide lower-cases; sdk-python's validator and sdk-nodejs sign the id as received.
    manifest = f"id:{ORDER_ID.lower() if lower else ORDER_ID};request-id:{REQUEST_ID};ts:{TS};"
    v1 = hmac.new(SECRET.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    assert verify_signature(SECRET, f"ts={TS},v1={v1}", REQUEST_ID, ORDER_ID) == 0


@pytest.mark.parametrize("ts", ["nan", "inf", "-1e309", "1e9", " ", "12.5", "-5", "1" * 17])
def test_ts_must_be_a_whole_number(ts):
    v1 = compute_signature(SECRET, DATA_ID, REQUEST_ID, ts)
    with pytest.raises(SignatureError, match="ts"):
        verify_signature(SECRET, f"ts={ts},v1={v1}", REQUEST_ID, DATA_ID, tolerance=300)
