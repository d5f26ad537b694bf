"""The replay loop both real drivers run (``protocol.workload.issue_due``)."""

from protocol.agent import Agent
from protocol.messages import Welcome
from protocol.plan import Operation, OpKind
from protocol.settings import ProtocolSettings
from protocol.workload import IssueLag, Schedule, issue_due

SETTINGS = ProtocolSettings(shed_after=0.03)


def _agents() -> dict[str, Agent]:
    agents = {}
    for node in ("a", "b"):
        agent = Agent(node, "coordinator", SETTINGS)
        agent.receive("coordinator", Welcome(node, 256, 1.0), 0.0)
        agent.drain()
        agents[node] = agent
    return agents


# a's op is due 50 ms before the loop gets to it (over shed_after): shed at the door
OPS = [
    Operation(1, 0.0, OpKind.PUBLISH, "a", "t", 16, 1),
    Operation(2, 0.049, OpKind.PUBLISH, "b", "t", 16, 1),
]


def test_an_agent_that_only_shed_is_not_touched_unless_asked() -> None:
    for touch_shed, expected in ((True, ["a", "b"]), (False, ["b"])):
        agents = _agents()
        touched: dict[str, Agent] = {}
        lag = IssueLag()
        after = issue_due(agents, Schedule(OPS), 0, len(OPS), 0.0, 0.05, lag, touched, touch_shed)
        assert after == 2 and lag.issued == 2
        assert sorted(touched) == expected
        assert agents["a"].shed == [1] and agents["b"].shed == []
        assert [type(m).__name__ for _, m in agents["b"].drain()] == ["Publish"]
