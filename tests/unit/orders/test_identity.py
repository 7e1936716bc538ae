"""Shopper tokens (shop/orders/identity.py): only a token signed with the shop's secret, for
that shop, unexpired and short-lived, names a shopper; each failure has its own code."""

from __future__ import annotations

import time

import jwt
import pytest

from shop.config import ShopperIdentityConfig
from shop.orders.identity import ShopperTokenError, ShopperVerifier, mint_token

SECRET_A = b"a" * 40
SECRET_B = b"b" * 40


@pytest.fixture
def verifiers(tmp_path):
    (tmp_path / "a.key").write_bytes(SECRET_A + b"\n")
    (tmp_path / "b.key").write_bytes(SECRET_B)
    a = ShopperVerifier("shop-a", ShopperIdentityConfig(secret_file="a.key", max_ttl_s=3600),
                        tmp_path)
    b = ShopperVerifier("shop-b", ShopperIdentityConfig(secret_file="b.key"), tmp_path)
    return a, b


def code_of(verifier, token) -> str:
    with pytest.raises(ShopperTokenError) as caught:
        verifier.verify(token)
    return caught.value.code


def test_a_token_signed_for_the_shop_names_its_shopper(verifiers):
    a, _ = verifiers
    shopper = a.verify(mint_token(SECRET_A, "shop-a", "u1", 600))
    assert (shopper.shop, shopper.id) == ("shop-a", "u1")
    assert shopper.expires_at > time.time()


def test_an_expired_token_is_refused_as_expired(verifiers):
    a, _ = verifiers
    old = mint_token(SECRET_A, "shop-a", "u1", 60, now=time.time() - 3600)
    assert code_of(a, old) == "shopper_token_expired"


def test_a_forged_signature_is_refused_as_invalid(verifiers):
    a, _ = verifiers
    forged = mint_token(b"x" * 40, "shop-a", "u1", 600)
    assert code_of(a, forged) == "shopper_token_invalid"
    # The claims edited after signing (another shopper): the signature no longer matches.
    header, _, signature = mint_token(SECRET_A, "shop-a", "u1", 600).split(".")
    payload = jwt.utils.base64url_encode(
        b'{"aud":"shop-a","sub":"u2","iat":%d,"exp":%d}' % (time.time(), time.time() + 600))
    assert code_of(a, f"{header}.{payload.decode()}.{signature}") == "shopper_token_invalid"


def test_shop_a_token_on_shop_b_is_refused_as_wrong_shop(verifiers):
    a, b = verifiers
    token = mint_token(SECRET_A, "shop-a", "u1", 600)
    assert code_of(b, token) == "shopper_token_wrong_shop"
    # Even signed with shop B's own secret, a token whose audience is shop A is not B's.
    assert code_of(b, mint_token(SECRET_B, "shop-a", "u1", 600)) == "shopper_token_wrong_shop"


def test_unsigned_and_other_algorithms_are_refused(verifiers):
    a, _ = verifiers
    claims = {"aud": "shop-a", "sub": "u1", "iat": int(time.time()),
              "exp": int(time.time()) + 600}
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert code_of(a, unsigned) == "shopper_token_invalid"
    hs512 = jwt.encode(claims, SECRET_A * 2, algorithm="HS512")
    assert code_of(a, hs512) == "shopper_token_invalid"
    assert code_of(a, "not-a-jwt") == "shopper_token_invalid"


def test_missing_claims_and_overlong_lifetimes_are_refused(verifiers):
    a, _ = verifiers
    now = int(time.time())
    no_subject = jwt.encode({"aud": "shop-a", "iat": now, "exp": now + 60}, SECRET_A,
                            algorithm="HS256")
    assert code_of(a, no_subject) == "shopper_token_invalid"
    a_year = mint_token(SECRET_A, "shop-a", "u1", 365 * 86400)
    with pytest.raises(ShopperTokenError, match="longer than this shop allows"):
        a.verify(a_year)


def test_without_a_secret_no_token_verifies(tmp_path):
    verifier = ShopperVerifier("shop-a", ShopperIdentityConfig(secret_env="CS_TEST_NO_SUCH_VAR"),
                               tmp_path)
    with pytest.raises(ShopperTokenError, match="no signing secret"):
        verifier.verify(mint_token(SECRET_A, "shop-a", "u1", 600))


def test_a_short_secret_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_TEST_SHORT_SECRET", "short")
    verifier = ShopperVerifier("shop-a", ShopperIdentityConfig(secret_env="CS_TEST_SHORT_SECRET"),
                               tmp_path)
    with pytest.raises(ShopperTokenError):
        verifier.verify(mint_token(b"short", "shop-a", "u1", 600))


def test_a_rotated_secret_file_is_read_again(verifiers, tmp_path):
    a, _ = verifiers
    old = mint_token(SECRET_A, "shop-a", "u1", 600)
    new_secret = b"n" * 40
    path = tmp_path / "a.key"
    path.write_bytes(new_secret)
    import os
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even within one tick
    assert code_of(a, old) == "shopper_token_invalid"
    assert a.verify(mint_token(new_secret, "shop-a", "u1", 600)).id == "u1"
