"""benchmarks/push_scale.py's pure parts: how sessions are spread, the nginx it renders, what it reads back.

A 100,000-session run takes minutes on a quiet machine, so what decides
whether it can work at all -- open files per process, ephemeral ports per
source address, nginx's worker_connections, the Locust command -- is checked
here without starting anything.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import pytest

from deliverybench.core.options import OptionError, validate

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))  # the benchmark imports push_capacity and _previous from beside itself

import push_scale as scale  # noqa: E402
from push_scale import ScalePlan  # noqa: E402

from tests.servers.nchan import NginxConfig, RunningNchan, render_config  # noqa: E402  (the benchmark's own import)

HARD_LIMIT = 20_000
PORTS = 60999 - 32768 + 1


def _plan(sessions: int, **kw: int) -> ScalePlan:
    return scale.plan_scale(sessions, fd_limit=HARD_LIMIT, ports_per_address=PORTS, cores=2, **kw)


def test_100000_sessions_fit_every_limit_with_room() -> None:
    plan = _plan(100_000)
    assert plan.problems() == []
    assert plan.sessions_per_address <= 10_000 and len(plan.addresses) == 10
    assert plan.fds_per_process <= 18_000 and plan.processes == 7
    assert plan.sessions_per_process * plan.processes >= 100_000
    # nginx: every worker's share within its worker_connections, which stay under the open-files limit
    assert plan.sessions_per_nginx_worker <= plan.worker_connections < HARD_LIMIT
    assert plan.nginx_fd_limit == HARD_LIMIT


def test_source_addresses_are_distinct_loopback_addresses_other_than_127_0_0_1() -> None:
    addresses = _plan(100_000).addresses
    assert addresses == tuple(f"127.0.0.{i}" for i in range(2, 12))
    assert scale.source_addresses(3, first_host=254) == ("127.0.0.254", "127.0.0.255", "127.0.1.0")
    assert all(ipaddress.ip_address(a).is_loopback for a in scale.source_addresses(300))
    with pytest.raises(ValueError):
        scale.source_addresses(0)


def test_the_baseline_gets_its_own_addresses_after_the_main_runs() -> None:
    main = _plan(100_000)
    baseline = _plan(10_000, first_host=2 + len(main.addresses))
    assert baseline.addresses == ("127.0.0.12",)
    assert not set(baseline.addresses) & set(main.addresses)
    assert (baseline.processes, baseline.nginx_workers) == (1, 2)  # one Locust process; one nginx worker per core


def test_given_counts_are_kept_and_a_plan_that_cannot_fit_says_why() -> None:
    plan = _plan(20_000, processes=2, addresses=2)
    assert (plan.sessions_per_process, plan.sessions_per_address) == (10_000, 10_000)
    assert plan.problems() == []
    crowded = _plan(100_000, processes=2, addresses=1, nginx_workers=2)
    problems = crowded.problems()
    assert len(problems) == 3
    assert "50,200 open files per Locust process" in problems[0] and "--processes" in problems[0]
    assert "100,000 sessions per source address" in problems[1] and "--addresses" in problems[1]
    assert "--nginx-workers" in problems[2]
    with pytest.raises(ValueError):
        _plan(0)


def test_an_nginx_allowed_past_the_hard_limit_needs_only_a_worker_per_core() -> None:
    plan = scale.plan_scale(100_000, fd_limit=HARD_LIMIT, nginx_fd_limit=200_000, cores=2)
    assert plan.nginx_workers == 2 and plan.worker_connections == 199_000
    assert plan.processes == 7  # the harness's own limit is unchanged


def test_nginx_config_spreads_connections_over_workers_and_the_tests_config_is_unchanged() -> None:
    plan = _plan(100_000)
    text = render_config(Path("/p"), 1234, scale.nginx_config(plan))
    assert "worker_processes 7;" in text
    assert "worker_rlimit_nofile 20000;" in text
    assert f"worker_connections {plan.worker_connections};" in text
    assert "listen 127.0.0.1:1234 reuseport backlog=4096;" in text
    assert "nchan_stub_status;" in text
    tests_own = render_config(Path("/p"), 1234)
    assert NginxConfig() == NginxConfig(workers=1, worker_connections=16384, rlimit_nofile=20000)
    for line in ("worker_processes 1;", "worker_rlimit_nofile 20000;", "worker_connections 16384;",
                 "listen 127.0.0.1:1234;"):
        assert line in tests_own


def _command(plan: ScalePlan, **overrides: Any) -> list[str]:
    nginx = RunningNchan("http://127.0.0.1:9/pub", "ws://127.0.0.1:9/sub", "http://127.0.0.1:9/status", 1, Path("/p"))
    values = scale.locust_values(plan, rate=0.2, duration=60.0, drain=10.0, settle_timeout=180.0, **overrides)
    return scale.locust_command(values, plan, nginx, results=Path("/r.json"), target_pids=[1, 2], master_port=5000)


def _flag(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_the_locust_command_runs_the_push_scenario_at_scale_against_nchan() -> None:
    cmd = _command(_plan(100_000))
    assert cmd[1:5] == ["-m", "locust", "-f", "scenarios/ws_push.py"] and "--headless" in cmd
    assert _flag(cmd, "-u") == "100000" and _flag(cmd, "--processes") == "7"
    assert _flag(cmd, "--source-addresses") == ",".join(f"127.0.0.{i}" for i in range(2, 12))
    assert _flag(cmd, "--publish-url") == "http://127.0.0.1:9/pub"
    assert _flag(cmd, "--subscribe-url") == "ws://127.0.0.1:9/sub"
    assert _flag(cmd, "--publish-batch") == "1"  # nchan forwards each POST body as one message
    assert _flag(cmd, "--master-port") == "5000" and _flag(cmd, "--master-bind-host") == "127.0.0.1"
    assert (_flag(cmd, "--rate"), _flag(cmd, "--duration")) == ("0.2", "60.0")
    # -t leaves room for spawning (50 s at 2,000/s), the longest wait to connect, the stream and the drain
    assert int(_flag(cmd, "-t").rstrip("s")) >= 100_000 / 250 + 180 + 60 + 10


def test_one_locust_process_runs_without_a_master() -> None:
    assert "--processes" not in _command(_plan(10_000))


def test_a_stream_the_harness_would_refuse_is_refused_before_anything_starts() -> None:
    plan = _plan(2_000)
    validate(scale.locust_values(plan, rate=0.2, duration=60.0))
    with pytest.raises(OptionError, match="at least 5"):
        validate(scale.locust_values(plan, rate=0.2, duration=10.0))
    with pytest.raises(KeyError):
        scale.locust_values(plan, no_such_option=1)


STUB = """\
total published messages: 12
stored messages: 12
shared memory used: 20K
channels: 1
subscribers: 100000
nchan version: 1.3.6
"""


def test_nchan_stub_status_is_read_as_numbers() -> None:
    status = scale.parse_stub_status(STUB)
    assert status["subscribers"] == 100_000 and status["total published messages"] == 12
    assert status["shared memory used"] == 20 * 1024
    assert "nchan version" not in status


def test_nginx_error_log_lines_are_counted_by_what_ran_out() -> None:
    log = ("2026/12/04 07:00:43 [alert] 1#1: setrlimit(RLIMIT_NOFILE, 100000) failed (1: Operation not permitted)\n"
           "2026/12/04 07:00:44 [crit] 1#1: accept4() failed (24: Too many open files)\n"
           "2026/12/04 07:00:44 [crit] 1#1: accept4() failed (24: Too many open files)\n"
           "2026/12/04 07:00:45 [alert] 1#1: 19000 worker_connections are not enough\n")
    assert scale.nginx_problems(log) == {"open files (EMFILE)": 2, "worker_connections": 1, "setrlimit refused": 1}
    assert scale.nginx_problems("") == {}


def test_kernel_counters_are_read_and_only_their_growth_kept() -> None:
    text = ("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 5 5\n"
            "IpExt: InNoRoutes\nIpExt: 0\n")
    before = scale.parse_netstat(text)
    assert before == {"SyncookiesSent": 0, "ListenOverflows": 5, "ListenDrops": 5, "InNoRoutes": 0}
    after = {**before, "ListenOverflows": 12, "ListenDrops": 12}
    assert scale.counter_growth(before, after) == {"ListenOverflows": 7, "ListenDrops": 7}


def _causes(**kw: Any) -> list[str]:
    args: dict[str, Any] = dict(requested=100_000, held=60_000, at_target=60_000, unmeasured=0, errors={}, nginx={},
                                kernel={}, peak_fds=15_000, fd_limit=HARD_LIMIT, min_available_fraction=0.5,
                                busy_fraction=0.5, exit_code=0)
    return scale.stop_causes(**{**args, **kw})


def test_what_stopped_the_sessions_is_named_from_what_was_measured() -> None:
    assert _causes(held=100_000, errors={"connect_oserror_99": 5}) == []
    assert scale.error_label("connect_oserror_99") == "connect_oserror_99 (EADDRNOTAVAIL)"
    assert scale.error_label("connect_timeout") == "connect_timeout"
    (ports,) = _causes(errors={"connect_oserror_99": 40_000})
    assert ports.startswith("ports: 40,000 connects failed with EADDRNOTAVAIL")
    (fds,) = _causes(errors={"connect_emfile": 7})
    assert fds.startswith("open files: 7 connects failed with EMFILE")
    assert _causes(peak_fds=19_990)[0].startswith("open files: 0 connects")  # at the limit, errors or not
    assert _causes(nginx={"worker_connections": 3})[0] == "nginx worker_connections: 3 lines in its error log"
    assert _causes(min_available_fraction=0.01)[0].startswith("memory:")
    assert _causes(exit_code=-9)[0].startswith("Locust ended by signal 9")
    assert _causes(errors={"connect_timeout": 9}, busy_fraction=0.97)[0].startswith("CPU: 9 connects timed out")
    assert _causes(kernel={"ListenOverflows": 30})[0].startswith("listen queue: 30 connection attempts")
    (unknown,) = _causes(errors={"connect_timeout": 9})  # timeouts on idle cores: said, not blamed on CPU
    assert unknown.startswith("none measured: 60,000 of 100,000 connected (connect_timeout x9; cores 50% busy)")


def test_ports_in_time_wait_are_counted_by_source_address() -> None:
    text = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
            "   0: 0200007F:8000 0100007F:1F90 06 00000000:00000000\n"  # 127.0.0.2, TIME_WAIT
            "   1: 0200007F:8001 0100007F:1F90 06 00000000:00000000\n"
            "   2: 0300007F:8000 0100007F:1F90 01 00000000:00000000\n"  # 127.0.0.3, ESTABLISHED
            "   3: 0100007F:8000 0100007F:1F90 06 00000000:00000000\n")
    assert scale.time_wait_by_address(text) == {"127.0.0.2": 2, "127.0.0.1": 1}


def test_sessions_the_target_held_but_the_audit_did_not_count_are_blamed_on_the_harness_not_on_resources() -> None:
    # 20,000 connected at nchan, one worker's final payload counted too late (seen at 20,000 sessions, 2 workers)
    causes = _causes(requested=20_000, held=10_000, at_target=20_000, unmeasured=10_000,
                     errors={"harness_worker_lost": 1}, kernel={"ListenOverflows": 2875})
    assert causes == ["harness: 10,000 subscribers unmeasured: the final payload of 1 Locust worker(s) was not "
                      "counted by the master (nchan held 20,000)"]
    assert _causes(requested=20_000, held=19_000, at_target=20_000) == [
        "none measured: nchan held all 20,000; the audit counted 19,000"]
