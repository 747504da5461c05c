"""How ``make test``'s two pytest-xdist workers share the suite (tests/conftest.py ``unit_of``):
each broker kind's tests are one unit (one worker starts that session broker), the demo's module
is one unit (each run checks that no demo process is left), the three-node drill joins the
Apache Kafka unit, every other test is its own."""
from __future__ import annotations

from tests.conftest import unit_of


def test_the_tests_of_one_broker_kind_are_one_unit():
    assert unit_of("tests/integration/test_gateway.py::test_loop[apache]") == "broker-apache"
    assert unit_of("tests/integration/test_drills.py::test_drill_on_a_shared_mesh"
                   "[embedded-gateway-kill]") == "broker-embedded"
    assert unit_of("tests/integration/test_drills.py::test_broker_restart_drill"
                   "[apache-broker-kill-log]") == "broker-apache"


def test_the_demo_is_one_unit_and_other_tests_are_their_own():
    demo = "tests/integration/test_demo.py::test_demo_runs_the_case_path_and_finds_no_leak"
    assert unit_of(f"{demo}[embedded]") == unit_of(f"{demo}[apache]") \
        == "tests/integration/test_demo.py"
    broker_kinds = "tests/integration/test_broker.py::test_start_on_a_port_in_use_says_so"
    assert unit_of(broker_kinds) == broker_kinds


def test_the_three_node_drill_runs_in_the_apache_unit():
    assert unit_of("tests/integration/test_drills.py::test_three_node_cluster_survives_a_"
                   "broker_and_the_controller_killed") == "broker-apache"
    # a parameter that merely contains a kind's name is not a kind
    assert unit_of("tests/unit/test_x.py::test_y[apache_only]") == \
        "tests/unit/test_x.py::test_y[apache_only]"
