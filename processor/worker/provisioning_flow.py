"""How one ``ncd.provisioning`` record is decided (R15; docs/provisioning.md).

Completed: applied to the stored account (unless an aggregation that started after it
already stored the account), or held until the account appears. PENDING: kept until an
aggregation shows its changes. FAILED (or another error): withdraws the pending one.
``notFound``: the account is deleted now, with ACCOUNT_DELETED. The stored ``asOf`` is kept:
provisioning does not make the state newer than an aggregation. The held, pending and
race-window state lives in :class:`~processor.worker.own_changes.OwnChanges`.
"""

from __future__ import annotations

from processor import codec
from processor.core import (
    SourcePolicy,
    apply_provisioning,
    decide_event,
    is_not_found,
    touched_attributes,
)
from processor.models import ProvisioningRecord, ProvisioningStatus
from processor.state.overlay import BatchOverlay
from processor.worker import accounts
from processor.worker.flow import Flow
from processor.worker.outcome import UNKNOWN_SOURCE, Outcome, Verdict, dead, emitted
from processor.worker.own_changes import completed_ms
from processor.worker.state import (
    StoredAccount,
    account_key,
    digest,
    k_account,
    k_index,
    record_id,
)


class ProvisioningFlow(Flow):
    """Decides the provisioning records of one partition against its state."""

    def decide(self, value: bytes, state: BatchOverlay) -> Outcome:
        """Decide one provisioning record's value (``InputError`` on bad input)."""
        record = codec.validate(ProvisioningRecord, codec.loads(value), "provisioning record")
        done = completed_ms(record)
        if done is not None:
            self._memory.not_future(done, "completedAt")
        source_id = record.sourceId
        policy = self._registry.policy(source_id)
        if policy is None:
            return dead(UNKNOWN_SOURCE, source_id)
        target = record.target()
        if target is None:
            return dead("provisioning record names no account", source_id)
        identity = policy.identity_key(target)
        if is_not_found(record):
            return self._not_found(policy, record, identity, done, state)
        ref = done if done is not None else self._memory.meta_of(source_id, state).latest_start()
        if record.error is not None or record.status is ProvisioningStatus.FAILED:
            self._own.withdraw(state, identity, record)
            return Outcome(Verdict.IGNORED, source_id=source_id)
        if record.status is ProvisioningStatus.PENDING:
            self._own.pend(state, identity, record, ref)
            return Outcome(Verdict.HELD, source_id=source_id)
        self._own.withdraw(state, identity, record)
        key = self._provisioned(record, identity, state)
        raw = None if key is None else state.get(k_account(source_id, key))
        if key is None or raw is None:
            self._own.hold(state, identity, record, ref)
            return Outcome(Verdict.HELD, source_id=source_id)
        return self._apply(policy, record, key, StoredAccount.decode(raw), done, state)

    def _apply(
        self,
        policy: SourcePolicy,
        record: ProvisioningRecord,
        key: str,
        stored: StoredAccount,
        done: int | None,
        state: BatchOverlay,
    ) -> Outcome:
        """Apply a completed record to the stored account; open its race window."""
        source_id = record.sourceId
        if done is not None and done <= stored.as_of_ms:
            # An aggregation that started after the change already read and stored it.
            return Outcome(Verdict.IGNORED, source_id=source_id)
        previous = accounts.stored_account(stored)
        updated = apply_provisioning(policy, previous, record)
        account_obj = updated.model_dump(mode="json", exclude_none=True)
        new = StoredAccount(stored.as_of_ms, digest(account_obj), codec.dumps(account_obj))
        state.put(k_account(source_id, key), new.encode())
        if done is not None:
            touched = touched_attributes(previous, updated, record)
            self._own.open_window(state, source_id, key, touched, done)
        return Outcome(Verdict.APPLIED, source_id=source_id)

    def _not_found(
        self,
        policy: SourcePolicy,
        record: ProvisioningRecord,
        identity: str,
        done: int | None,
        state: BatchOverlay,
    ) -> Outcome:
        """The connector found no account: report its deletion now, once."""
        source_id = record.sourceId
        key = self._provisioned(record, identity, state)
        previous = None if key is None else accounts.drop(policy, source_id, key, state)
        if previous is None:
            return Outcome(Verdict.IGNORED, source_id=source_id)
        if done is not None:
            self._own.mark_gone(state, source_id, identity, done)
        if not self._memory.meta_of(source_id, state).baseline:
            return Outcome(Verdict.APPLIED, source_id=source_id)
        context = "notFound/" + record_id(record.model_dump(mode="json", exclude_none=True))
        event = decide_event(
            policy, previous, None, self._registry.catalog(source_id), context=context
        )
        if event is None:
            return Outcome(Verdict.APPLIED, source_id=source_id)
        return emitted(policy, [event], source_id)

    def _provisioned(
        self, record: ProvisioningRecord, identity: str, state: BatchOverlay
    ) -> str | None:
        """The state key of a provisioning record's account: by ``compound.uniqueId``
        when a stored account has that uuid (docs/records.md), else by nativeIdentity."""
        unique_id = record.unique_id()
        if unique_id is not None:
            key = account_key(unique_id, identity)
            if state.get(k_account(record.sourceId, key)) is not None:
                return key
        indexed = state.get(k_index(record.sourceId, identity))
        return None if indexed is None else indexed.decode()
