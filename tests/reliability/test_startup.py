"""Workers started together on a fresh cluster: both join, both get partitions, none exits.

Two races lived here: kafka-python 3.0.12 lost a group join that outlived a poll (the
member stayed "rebalancing" for good with no partitions), and a topic just created by the
other worker answered NOT_LEADER_FOR_PARTITION (the librdkafka worker exited with 2).
Each round starts two workers at once on topics that do not exist yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broker import SessionBroker
from tests.conftest import TRANSPORTS
from tests.helpers import wait_for
from tests.integration.harness import WorkerEnv

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Rounds per transport: the join race showed in about one start in five under load.
ROUNDS = 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_workers_started_together_on_new_topics_share_the_partitions(
    kafka_broker: SessionBroker, tmp_path: Path, transport: str
) -> None:
    """Two workers started at once on topics neither has created yet both end up holding
    partitions, and neither exits."""
    for round_ in range(ROUNDS):
        env = WorkerEnv(kafka_broker.bootstrap, tmp_path / f"round-{round_}", transport=transport)
        env.state_root.mkdir(parents=True)
        try:
            first, second = env.start("w1", http=True), env.start("w2", http=True)

            def shared(env: WorkerEnv = env) -> bool:
                for proc in env.procs:
                    assert proc.poll() is None, f"a worker exited: {env.log_text('w1')[-800:]}"
                first_held, second_held = env.assigned("w1"), env.assigned("w2")
                return bool(first_held and second_held) and (
                    sorted(first_held + second_held) == [0, 1, 2]
                )

            wait_for(shared, f"round {round_}: both workers to hold partitions, all three")
            assert env.stop(first) == 0
            assert env.stop(second) == 0
        finally:
            env.stop_all()
