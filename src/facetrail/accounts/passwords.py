"""Password hashing (argon2id) and the password rule."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from facetrail.errors import BadInputError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


# Computed once so that a login for an unknown user costs the same as one for a known user.
DUMMY_HASH = _hasher.hash("facetrail-timing-equaliser")


def check_password_rule(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadInputError(f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadInputError(f"password must have at most {MAX_PASSWORD_LENGTH} characters", field="password")
    if username and username.lower() in password.lower():
        raise BadInputError("password must not contain the username", field="password")
    if len(set(password)) < 5:
        raise BadInputError("password is too repetitive", field="password")
