"""The identity and account blocks of an event (R14)."""

from __future__ import annotations

import hashlib

from processor.core.event import AccountJson, IdentityJson
from processor.core.policy import SourcePolicy
from processor.models import Account


def system_identity_id(source_id: str, account: Account) -> str:
    """The deterministic id of an uncorrelated account's placeholder identity.

    32 lowercase hex characters of sha256 over the source id and the account's uuid
    (its nativeIdentity when it has none), so it survives renames.
    """
    key = account.uuid or account.nativeIdentity
    return hashlib.sha256(f"{source_id}\x00{key}".encode()).hexdigest()[:32]


def account_name(policy: SourcePolicy, account: Account) -> str:
    """The account's name, else its display attribute when a string, else nativeIdentity."""
    if account.name:
        return account.name
    display = policy.source.accountSchema.displayAttribute
    if display is not None:
        value = account.attributes.get(display)
        if isinstance(value, str) and value:
            return value
    return account.nativeIdentity


def is_correlated(account: Account) -> bool:
    """``account.correlated`` when given, else whether an identity is present; never
    correlated without an identity."""
    if account.identity is None:
        return False
    return True if account.correlated is None else account.correlated


def event_identity(policy: SourcePolicy, account: Account) -> IdentityJson:
    """The event's identity: the account's, or a system-generated placeholder."""
    identity = account.identity
    if identity is None:
        name = account_name(policy, account)
        return {
            "id": system_identity_id(policy.source.id, account),
            "name": name,
            "alias": name,
            "type": "IDENTITY",
            "email": None,
            "manager": None,
        }
    manager = identity.manager
    return {
        "id": identity.id or system_identity_id(policy.source.id, account),
        "name": identity.name,
        "alias": identity.alias,
        "type": "IDENTITY",
        "email": identity.email,
        "manager": None
        if manager is None
        else {"id": manager.id, "name": manager.name, "type": "IDENTITY", "email": manager.email},
    }


def event_account(policy: SourcePolicy, account: Account) -> AccountJson:
    """The event's account block."""
    return {
        "id": account.id,
        "name": account_name(policy, account),
        "type": "ACCOUNT",
        "uuid": account.uuid,
        "correlated": is_correlated(account),
        "nativeIdentity": account.nativeIdentity,
    }
