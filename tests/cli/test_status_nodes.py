"""`laneagent status` (text) names the node in use and the unreachable ones of a broker cluster."""

from agent.cli.status import nodes_line


def test_a_cluster_back_end_shows_its_node_and_the_unreachable_ones():
    b = {"broker": "10.0.0.1:8883,10.0.0.2:8883,10.0.0.3:8883", "node": "10.0.0.2:8883",
         "unreachable": ["10.0.0.1:8883"]}
    assert nodes_line(b) == "node in use 10.0.0.2:8883; unreachable: 10.0.0.1:8883"
    assert nodes_line({**b, "node": None, "unreachable": ["10.0.0.1:8883", "10.0.0.2:8883"]}) == \
        "node in use -; unreachable: 10.0.0.1:8883, 10.0.0.2:8883"
    assert nodes_line({**b, "unreachable": []}) == "node in use 10.0.0.2:8883; unreachable: none"


def test_one_node_in_use_adds_no_line():
    assert nodes_line({"broker": "127.0.0.1:1883", "node": "127.0.0.1:1883", "unreachable": []}) is None
    assert nodes_line({"broker": "127.0.0.1:1883"}) is None  # a daemon without the cluster figures
