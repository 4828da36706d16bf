"""The option table: every option reaches Locust, round-trips, and is checked the same way everywhere.

The table is walked, not listed: an option added to
``deliverybench/core/options.py`` is covered here without touching this file.
Locust's side is Locust's own parser (``locust.argument_parser``) with the
locustfile's options registered exactly as ``locust -f`` does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# Locust's parser, without Locust monkey-patching this pytest process (the real runs are subprocesses)
os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"
try:
    from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments
finally:
    del os.environ["LOCUST_SKIP_MONKEY_PATCH"]

from helpers import REPO, env

from deliverybench.cli.config import ConfigError, RunConfig, resolve
from deliverybench.cli.orchestrate import SCENARIOS, _locust_command
from deliverybench.core.options import MODES, OPTIONS, Option, OptionError, locust_argv, locust_options, run_options
from deliverybench.core.redact import REDACTED, redact_argv, redact_config
from deliverybench.harness.locust_options import add_options, check_form
from targets.start import TargetUrls

_TEXT_CANDIDATES = ("ws://127.0.0.1:9/x", "http://127.0.0.1:9/x", "127.0.0.2", "exp:5", "7", "12,34", "p99<=50ms",
                    "sample", "/data", "{\"data\":{event}}")


def sample_value(option: Option) -> Any:
    """A valid value other than the default, found from the option's own declaration."""
    if option.kind is bool:
        return not option.default
    if option.dest == "target":
        return "push"  # a registered target's name: the registry, not the table, knows them
    if option.choices:
        return next(c for c in option.choices if c != option.default)
    if option.kind is int:
        candidates: tuple[Any, ...] = (option.default + 1, option.default + 7, 200)
    elif option.kind is float:
        candidates = (option.default + 0.5, option.default * 0.5 + 0.25, 0.75)
    elif option.kind is tuple:
        candidates = (("poll", "push"), ("burst",), ("push.p99", "lost"), ("p99=0.2", "push.p50=0.05"))
    else:
        candidates = _TEXT_CANDIDATES
    for value in candidates:
        if value != option.default and option.problem(value) is None:
            return value
    raise AssertionError(f"no sample value for --{option.name}")


def as_text(option: Option, value: Any) -> str:
    if option.kind is tuple:
        return ",".join(value)
    if option.kind is float:
        return repr(value)
    return str(value)


def locust_parser(mode: str) -> Any:
    parser = get_empty_argument_parser(add_help=False, default_config_files=[])
    setup_parser_arguments(parser)
    add_options(parser, mode)
    return parser


def _argv_for(option: Option, value: Any) -> list[str]:
    if option.kind is bool:
        return [option.flag] if value != option.default else []
    return [option.flag, as_text(option, value)]


#: what else a URL option needs to be a valid run (an external target, the mode it serves)
URL_CONTEXT = {
    "publish_url": ["--target", "relay", "--modes", "burst"],
    "subscribe_url": ["--target", "relay", "--modes", "push", "--publish-url", "http://127.0.0.1:9/p"],
    "poll_url": ["--target", "relay", "--modes", "poll", "--publish-url", "http://127.0.0.1:9/p"],
    "sse_url": ["--target", "relay", "--modes", "sse", "--publish-url", "http://127.0.0.1:9/p"],
    "longpoll_url": ["--target", "relay", "--modes", "longpoll", "--publish-url", "http://127.0.0.1:9/p"],
    "callback_url": ["--target", "relay", "--modes", "callback", "--publish-url", "http://127.0.0.1:9/p"],
    "consumer_url": ["--modes", "burst"],
    # how an external server speaks: only with --target relay
    **{dest: ["--target", "relay", "--modes", "push", "--publish-url", "http://127.0.0.1:9/p",
              "--subscribe-url", "ws://127.0.0.1:9/s"]
       for dest in ("protocol", "channel", "subscribe_message", "event_path", "publish_template", "publish_greeting")},
    "longpoll_resume": ["--target", "relay", "--modes", "longpoll", "--publish-url", "http://127.0.0.1:9/p",
                        "--longpoll-url", "http://127.0.0.1:9/lp"],
    "webhook_signing": ["--target", "relay", "--modes", "callback", "--publish-url", "http://127.0.0.1:9/p",
                        "--callback-url", "http://127.0.0.1:9/subscriptions"],
}
HANDED = [o for o in OPTIONS if o.handoff == "value" and o.scope in ("run", "both")]


def test_every_option_is_reachable_from_somewhere() -> None:
    for option in OPTIONS:
        assert option.scope in ("run", "locust", "both")
        assert option.help.endswith("."), f"--{option.name}: help should be a sentence"
        if option.scope == "run" and option.handoff == "value":
            assert option.locust_flag, f"--{option.name} is handed to Locust but names no flag"
    # each mode's locustfile has the stream and the plumbing it needs
    for mode in MODES:
        names = {o.dest for o in locust_options(mode)}
        assert {"rate", "duration", "schedule", "publish_url", "subscribe_url", "results"} <= names


@pytest.mark.parametrize("option", [o for o in run_options() if o.dest != "config"], ids=lambda o: o.name)
def test_run_bench_reads_every_option_from_argv_env_and_toml(option: Option, tmp_path: Path) -> None:
    value = sample_value(option)
    extra = URL_CONTEXT.get(option.dest, [])
    from_argv = resolve([*extra, *_argv_for(option, value)], env={})
    assert getattr(from_argv, option.dest) == value
    from_env = resolve(extra, env={option.env_var: as_text(option, value).lower() if option.kind is bool
                                   else as_text(option, value)})
    assert getattr(from_env, option.dest) == value
    for key in {option.name, option.dest}:  # both spellings, at the top level and in the table
        for table in ("", "[deliverybench]\n"):
            toml = tmp_path / "bench.toml"
            literal = json.dumps(list(value)) if option.kind is tuple else json.dumps(value)
            toml.write_text(f'{table}"{key}" = {literal}\n')
            from_file = resolve([*extra, "--config", str(toml)], env={})
            assert getattr(from_file, option.dest) == value, (key, table)


@pytest.mark.parametrize("mode", MODES)
def test_every_handed_option_reaches_locust_and_round_trips(mode: str) -> None:
    values = {o.dest: o.default for o in OPTIONS}
    changed = {o.dest: sample_value(o) for o in HANDED if mode in o.modes}
    values.update(changed)
    config = RunConfig(values)
    cmd = _locust_command(config, mode, TargetUrls("push", ingress="http://127.0.0.1:9/publish",
                                                   egress="ws://127.0.0.1:9/"),
                          Path("/tmp/r.json"), Path("/tmp/r.live.json"))
    argv = cmd[cmd.index(str(SCENARIOS[mode])) + 1:]
    parsed = vars(locust_parser(mode).parse_args(argv))
    for dest, value in changed.items():
        option = next(o for o in OPTIONS if o.dest == dest)
        locust_dest = {"-u": "num_users", "-r": "spawn_rate"}.get(option.locust_flag or "", dest)
        assert parsed[locust_dest] == value, f"--{option.name} did not reach Locust ({mode})"
    assert parsed["publish_url"] == "http://127.0.0.1:9/publish"
    assert parsed["results"] == "/tmp/r.json" and parsed["live_file"] == "/tmp/r.live.json"
    # nothing that does not apply to this mode is handed on
    assert set(locust_argv(values, mode)) <= set(argv)
    for option in OPTIONS:
        if mode not in option.modes and option.scope != "run":
            assert f"--{option.name}" not in argv


@pytest.mark.parametrize("mode", MODES)
def test_locust_environment_twins_set_every_option(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for option in locust_options(mode):
        value = sample_value(option)
        monkeypatch.setenv(option.env_var, as_text(option, value).lower() if option.kind is bool
                           else as_text(option, value))
    parsed = vars(locust_parser(mode).parse_args([]))
    for option in locust_options(mode):
        assert parsed[option.dest] == sample_value(option), option.name


BAD_VALUES = [
    ("rate", "-5", "--rate must be positive (got -5)"),
    ("rate", "nan", "--rate must be a finite number (got 'nan')"),
    ("duration", "inf", "--duration must be a finite number (got 'inf')"),
    ("drain", "-1", "--drain cannot be negative (got -1)"),
    ("payload-bytes", "x", "--payload-bytes: 'x' is not a whole number"),
    ("schedule", "zigzag", "--schedule must be one of constant, burst, poisson, ramp (got 'zigzag')"),
    ("source-addresses", "localhost", "--source-addresses must be comma-separated IP addresses"),
    ("ack-delay", "soon", "--ack-delay ack delay 'soon'"),
    ("fail-ratio", "2", "--fail-ratio must be between 0 and 1 (got 2)"),
]


@pytest.mark.parametrize("name, raw, message", BAD_VALUES)
def test_a_bad_value_gets_the_same_line_on_every_path(name: str, raw: str, message: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    option = next(o for o in OPTIONS if o.name == name)
    with pytest.raises(ConfigError) as caught:
        resolve([f"--{name}", raw], env={})
    assert message in str(caught.value)
    mode = option.modes[0]
    with pytest.raises(SystemExit) as exited:
        locust_parser(mode).parse_args([f"--{name}", raw])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"locust: error: {caught.value}"]
    assert check_form({option.dest: raw}, {o.dest: o.default for o in OPTIONS}, mode) == str(caught.value)


def test_combination_checks_run_on_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(["--schedule", "ramp"], env={})
    with pytest.raises(SystemExit):
        locust_parser("push").parse_args(["--schedule", "ramp"])
    assert capsys.readouterr().err.strip() == f"locust: error: {caught.value}"


def test_locust_command_line_exits_2_with_one_line_before_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "locust", "-f", str(REPO / "scenarios" / "ws_push.py"),
                           "--headless", "-u", "5", "-r", "5", "--rate", "-5", "--duration", "3",
                           "--processes", "2"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["locust: error: --rate must be positive (got -5)"]
    assert time.monotonic() - started < 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_web_ui_form_is_checked_with_the_same_line(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(REPO / "scenarios" / "poll.py"),
                             "--web-host", "127.0.0.1", "--web-port", str(port), "--subscribe-url",
                             "http://127.0.0.1:9/events", "--publish-url", "http://127.0.0.1:9/publish"],
                            cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        body = urllib.parse.urlencode({"user_count": "1", "spawn_rate": "1", "host": "", "rate": "-2",
                                       "poll_interval": "0.5"}).encode()
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/swarm", data=body, timeout=5) as resp:
                    answer = json.loads(resp.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer["success"] is False
        assert answer["message"] == "--rate must be positive (got -2)"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_toml_rejects_unknown_keys_and_tables_with_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    for text, message in [('rate = 5\nfrobnicate = 1\n', "bench.toml: frobnicate is not an option"),
                          ('[other]\nrate = 5\n', "table [other] is not used"),
                          ('[deliverybench]\nrate = "fast"\n',
                           "bench.toml: deliverybench.rate: 'fast' is not a number"),
                          ('rate = 5\n[deliverybench]\nrate = 6\n', "is set twice"),
                          ('webhook_secret = [12345]\n', "bench.toml: webhook_secret must be text")]:
        toml.write_text(text)
        with pytest.raises(ConfigError) as caught:
            resolve(["--config", str(toml)], env={})
        assert message in str(caught.value), caught.value
        assert "12345" not in str(caught.value)


def test_secrets_are_accepted_in_every_spelling_and_never_echoed(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    toml.write_text('webhook_secret = "whsec_hunter2"\n')
    assert resolve(["--config", str(toml)], env={}).webhook_secret == "whsec_hunter2"
    with pytest.raises(ConfigError) as caught:
        resolve(["--webhook-sec", "whsec_hunter2"], env={})
    assert "hunter2" not in str(caught.value)
    for argv in (["locust", "--webhook-secret", "S3"], ["locust", "--webhook-sec", "S3"], ["locust", "--webhook-s=S3"],
                 ["run_bench.py", "--webhook-secret=S3"]):
        assert "S3" not in " ".join(redact_argv(argv)), argv
        assert REDACTED in " ".join(redact_argv(argv))
    assert redact_argv(["locust", "--rate", "5", "--web-port", "8089"]) == ["locust", "--rate", "5", "--web-port",
                                                                            "8089"]
    assert redact_config({"webhook_secret": "S3", "locust": {"webhook_secret": "S3"}}) == {
        "webhook_secret": REDACTED, "locust": {"webhook_secret": REDACTED}}


def test_environment_typos_are_errors_and_locust_only_twins_are_ignored() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve([], env={"DELIVERYBENCH_RAET": "5"})
    assert "DELIVERYBENCH_RAET is not an option" in str(caught.value)
    assert resolve([], env={"DELIVERYBENCH_STATS_URL": "http://127.0.0.1:1/stats"}).rate == 5.0


def test_precedence_is_default_then_file_then_environment_then_argv(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    toml.write_text("rate = 2\nduration = 3\ndrain = 4\n")
    config = resolve(["--config", str(toml), "--rate", "9"], env={"DELIVERYBENCH_DURATION": "8"})
    assert (config.rate, config.duration, config.drain, config.settle) == (9.0, 8.0, 4.0, 1.0)


def test_a_profile_sets_defaults_that_the_file_environment_and_argv_still_override(tmp_path: Path) -> None:
    ci = resolve(["--profile", "ci"], env={})
    assert (ci.modes, ci.subscribers, ci.duration, ci.repeats, ci.spawn_rate) == (
        ("push", "callback"), 1000, 5.0, 10, 1000.0)
    toml = tmp_path / "bench.toml"
    toml.write_text("profile = 'ci'\nduration = 7\n")
    config = resolve(["--config", str(toml), "--repeats", "3"], env={"DELIVERYBENCH_SPAWN_RATE": "300"})
    assert (config.subscribers, config.duration, config.repeats, config.spawn_rate) == (1000, 7.0, 3, 300.0)
    with pytest.raises(ConfigError) as caught:
        resolve(["--profile", "nightly"], env={})
    assert "--profile must be one of ci" in str(caught.value)


def test_relay_without_modes_runs_the_modes_whose_urls_were_given() -> None:
    config = resolve(["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--subscribe-url",
                      "ws://127.0.0.1:9/ws"], env={})
    assert config.modes == ("push",)
    config = resolve(["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--poll-url",
                      "http://127.0.0.1:9/events", "--subscribe-url", "ws://127.0.0.1:9/ws"], env={})
    assert config.modes == ("push", "poll")
    with pytest.raises(OptionError):
        resolve(["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--subscribe-url",
                 "http://127.0.0.1:9/not-ws"], env={})


# -- guard rails (issue 24): a stream too short to measure, and a misspelt option -------------------


@pytest.mark.parametrize("argv, message", [
    (["--duration", "0.0001"], "--duration 0.0001 gives 1 event at 5 events/s; at least 5 are needed for a "
                               "measurement: use --duration 1 or more"),
    (["--rate", "100", "--duration", "0.03"], "--duration 0.03 gives 3 events at 100 events/s; at least 5 are "
                                              "needed for a measurement: use --duration 0.05 or more"),
    (["--schedule", "burst", "--burst-size", "2", "--duration", "1.5"],
     "--duration 1.5 gives 4 events (2 bursts of 2); at least 5 are needed for a measurement: use --duration "
     "2.5 or more"),
])
def test_a_stream_too_short_to_measure_is_refused_with_the_minimum(argv: list[str], message: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(argv, env={})
    assert str(caught.value) == message
    # the same check on the locustfiles' path, and the shortest duration it names is accepted
    with pytest.raises(SystemExit):
        locust_parser("push").parse_args(argv)
    assert capsys.readouterr().err.strip() == f"locust: error: {message}"
    shortest = message.rsplit("--duration ", 1)[1].split()[0]
    assert resolve([*argv[:-2], "--duration", shortest], env={}).duration == float(shortest)


def test_the_minimum_names_where_the_duration_came_from_and_counts_one_burst_of_many() -> None:
    with pytest.raises(ConfigError, match=r"^DELIVERYBENCH_DURATION 0\.1 gives 1 event"):
        resolve([], env={"DELIVERYBENCH_DURATION": "0.1"})
    assert resolve(["--schedule", "burst", "--burst-size", "100", "--duration", "0.5"], env={}).duration == 0.5
    assert resolve(["--duration", "1"], env={}).duration == 1.0  # 5 events at the default 5/s: the README's runs


@pytest.mark.parametrize("args, message", [
    (["--duration", "0.0001"], "run_bench.py: error: --duration 0.0001 gives 1 event at 5 events/s; at least 5 "
                               "are needed for a measurement: use --duration 1 or more"),
    (["--subscriber", "100"], "run_bench.py: error: unrecognized argument '--subscriber'; did you mean "
                              "--subscribers? (see --help; pass Locust options after --)"),
    (["sweep", "--subscriber", "100"], "run_bench.py sweep: error: unrecognized argument '--subscriber'; did you "
                                       "mean --subscribers? (see --help; pass Locust options after --)"),
    (["sweep", "--rate", "1", "--duration", "2"], "run_bench.py sweep: error: --duration 2 gives 2 events at 1 "
                                                  "event/s; at least 5 are needed for a measurement: use "
                                                  "--duration 5 or more"),
    (["sweep", "--confrim", "1"], "run_bench.py sweep: error: unrecognized argument '--confrim'; did you mean "
                                  "--confirm? (see --help; pass Locust options after --)"),
    (["compare", "a.json", "b.json", "--tolerence", "p99=0.2"],
     "run_bench.py compare: error: unrecognized argument '--tolerence'; did you mean --tolerance? (see --help)"),
    (["sweeep"], "run_bench.py: error: unrecognized argument 'sweeep'; did you mean sweep? (see --help; pass "
                 "Locust options after --)"),
    (["-u", "10", "compare"], "run_bench.py: error: unrecognized argument 'compare': a subcommand comes first "
                              "(run_bench.py compare ...) (see --help; pass Locust options after --)"),
    # issue 26: the event-stream and long-poll egress of an external target, and how long-polling resumes
    (["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--modes", "sse", "--sse-url",
      "https://127.0.0.1:9/sse"], "run_bench.py: error: --sse-url must be a http:// URL (got "
                                  "'https://127.0.0.1:9/sse')"),
    (["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--modes", "sse,longpoll", "--sse-url",
      "http://127.0.0.1:9/sse", "--longpoll-url", "ws://127.0.0.1:9/lp"],
     "run_bench.py: error: --longpoll-url must be a http:// or https:// URL (got 'ws://127.0.0.1:9/lp')"),
    (["--target", "relay", "--publish-url", "http://127.0.0.1:9/p", "--modes", "longpoll"],
     "run_bench.py: error: --target relay with mode longpoll needs --longpoll-url"),
    (["--modes", "longpoll", "--longpoll-resume", "cookie"],
     "run_bench.py: error: --longpoll-resume must be one of after, etag (got 'cookie')"),
    (["--modes", "sse", "--sse-url", "http://127.0.0.1:9/sse"],
     "run_bench.py: error: URLs given with --target builtin; use --target relay for an external target"),
    # issue 27: how an external server speaks
    (["--target", "relay", "--publish-url", "ws://127.0.0.1:9/p", "--subscribe-url", "ws://127.0.0.1:9/s",
      "--publish-template", '{"data":{evnt}}'],
     "run_bench.py: error: --publish-template unknown placeholder {evnt} in the publish template; known: {event}, "
     "{event|json}, {event|sse|json}, {event|length}, {event|mqtt}, {channel}, {id} (got '{\"data\":{evnt}}')"),
    (["--target", "relay", "--publish-url", "ws://127.0.0.1:9/p", "--subscribe-url", "ws://127.0.0.1:9/s",
      "--publish-template", '{"channel":"{channel}"}'],
     "run_bench.py: error: --publish-template the publish template has no {event}: where should the event go? "
     "(got '{\"channel\":\"{channel}\"}')"),
    (["--target", "relay", "--publish-url", "ws://127.0.0.1:9/p", "--subscribe-url", "ws://127.0.0.1:9/s",
      "--protocol", "stomp"],
     "run_bench.py: error: --protocol must be one of raw, nats, socketio, graphql-ws, mqtt (got 'stomp')"),
    # a mode the named target does not offer: refused before its server starts
    (["--target", "nats", "--modes", "push,callback"],
     "run_bench.py: error: the nats target offers push, not callback"),
    (["--target", "alertmanager", "--modes", "push,sse,callback"],
     "run_bench.py: error: the alertmanager target offers callback, not push, sse"),
    (["--target", "callback", "--modes", "push"],
     "run_bench.py: error: the callback target offers callback, poll, not push"),
    (["--target", "nats", "--event-path", "/data"],
     "run_bench.py: error: --event-path describes an external server's protocol: give it with --target relay; "
     "the nats target speaks its own"),
])
def test_usage_errors_exit_2_with_one_line_that_says_what_would_work(tmp_path: Path, args: list[str],
                                                                      message: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "run_bench.py"), *args, "--out", str(tmp_path)],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [message]
    assert not list(tmp_path.iterdir())  # refused before anything was run or written


def test_a_misspelt_toml_key_or_environment_variable_gets_a_suggestion(tmp_path: Path) -> None:
    toml = tmp_path / "bench.toml"
    for text, message in [("subscriber = 100\n", "bench.toml: subscriber is not an option; did you mean "
                                                 "subscribers? (see run_bench.py --help)"),
                          ("[deliverybench]\nspawn_rat = 5\n", "bench.toml: deliverybench.spawn_rat is not an "
                                                              "option; did you mean spawn_rate?"),
                          ("frobnicate = 1\n", "bench.toml: frobnicate is not an option (see run_bench.py --help)")]:
        toml.write_text(text)
        with pytest.raises(ConfigError) as caught:
            resolve(["--config", str(toml)], env={})
        assert message in str(caught.value), caught.value
    with pytest.raises(ConfigError) as caught:
        resolve([], env={"DELIVERYBENCH_SUBSCRIBER": "100"})
    assert str(caught.value) == ("environment variable DELIVERYBENCH_SUBSCRIBER is not an option; did you mean "
                                 "DELIVERYBENCH_SUBSCRIBERS? (see run_bench.py --help)")
    with pytest.raises(ConfigError) as caught:
        resolve(["--webhook-secre=S3CRET"], env={})
    assert "S3CRET" not in str(caught.value) and "did you mean --webhook-secret?" in str(caught.value)


def test_protocol_options_without_relay_are_refused_not_ignored() -> None:
    """A named target speaks its own protocol: --event-path with it would be silently dropped."""
    with pytest.raises(ConfigError, match=r"--subscribe-message, --event-path describe an external server's "
                                          r"protocol: give them with --target relay; the nats target speaks its own"):
        resolve(["--target", "nats", "--event-path", "/data", "--subscribe-message", "hi"], env={})
    relay = resolve(["--target", "relay", "--modes", "push", "--publish-url", "ws://127.0.0.1:9/p",
                     "--subscribe-url", "ws://127.0.0.1:9/s", "--event-path", "/data"], env={})
    assert relay.publish_url == "ws://127.0.0.1:9/p" and relay.values["event_path"] == "/data"


def test_a_named_target_without_modes_runs_what_it_offers_and_asked_modes_are_checked() -> None:
    assert resolve(["--target", "nchan"], env={}).modes == ("push", "sse", "longpoll")
    assert resolve(["--target", "alertmanager"], env={}).modes == ("callback",)
    assert resolve(["--profile", "ci", "--target", "nats"], env={}).modes == ("push",)  # the profile's, offered
    assert resolve(["--target", "nchan", "--modes", "sse"], env={}).modes == ("sse",)
    with pytest.raises(ConfigError, match=r"^the nchan target offers push, sse, longpoll, not poll$"):
        resolve(["--target", "nchan", "--modes", "push,poll"], env={})
