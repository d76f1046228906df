"""The collector's commands through the real root CLI (agent.cli.main), in process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agent.cli import build_parser
from collector import tokens
from collector.cli import format_cost_report
from collector.schema import admin_tokens
from collector.store import DeviceInfo, Store
from tests.collector.helpers import STREAM_ID, ServersThread, bearer, make_record
from tests.collector.helpers import run_cli as run

PRICE_BOOK = {
    "currency": "EUR",
    "hardware": {"default": {"purchase": "1200.00", "residual": "0", "lifetime_years": 4, "upkeep_per_year": "120.00"}},
    "energy": {"default": {"kwh": "0.25", "pue": "1.2"}},
}


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    Store.open(url).close()
    monkeypatch.setenv("INFERMETER_DB", url)
    return url


def http_get(url: str, store: Store) -> object:
    """GET url with a new viewer token of `store`; the JSON body."""
    request = urllib.request.Request(url, headers=bearer(store.add_admin_token("viewer").token))
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def with_records(db: str) -> Store:
    store = Store.open(db)
    device = store.add_device("edge-1")
    records = [make_record(seq, model="bert" if seq % 2 else "resnet50") for seq in range(1, 7)]
    store.ingest(device.device_id, STREAM_ID, DeviceInfo("edge-1", 4, "linux", "0.1.0"), records)
    return store


def test_device_add_prints_a_token_that_authenticates(db, capsys):
    code, out, err = run(capsys, "admin", "device", "add", "edge-01", "--profile", "jetson", "--site", "lab")

    assert (code, err) == (0, "")
    token = out.splitlines()[2].strip()
    assert "token file" in out
    store = Store.open(db)
    try:
        auth = store.authenticate(token)
        assert auth is not None and auth.name == "edge-01"
        assert [(d.name, d.profile, d.site) for d in store.list_devices()] == [("edge-01", "jetson", "lab")]
    finally:
        store.close()


def test_device_add_json(db, capsys):
    code, out, _ = run(capsys, "admin", "device", "add", "edge-01", "--json")

    assert code == 0
    assert set(json.loads(out)) == {"device_id", "name", "token"}


@pytest.mark.parametrize("name", ["edge-01", "bad name/with slash", ""])
def test_device_add_bad_or_duplicate_name_is_a_usage_error(db, capsys, name):
    run(capsys, "admin", "device", "add", "edge-01")

    code, out, err = run(capsys, "admin", "device", "add", name)

    assert (code, out) == (2, "")
    assert err.startswith("infermeter: ") and err.count("\n") == 1


def test_device_list_json_is_the_http_apis_object(db, capsys):
    store = with_records(db)
    try:
        with ServersThread(store) as running:
            http = http_get(f"{running.http_url}/api/v1/devices", store)
    finally:
        store.close()

    code, out, _ = run(capsys, "admin", "device", "list", "--json")

    assert code == 0
    assert json.loads(out) == http
    code, out, _ = run(capsys, "admin", "device", "list")
    assert "edge-1" in out and "active" in out


@pytest.mark.parametrize("by", ["name", "id"])
def test_device_revoke_refuses_the_token_and_keeps_the_records(db, capsys, by):
    with Store.open(db) as store:
        device = store.add_device("edge-1")
        assert store.authenticate(device.token).revoked is False

    code, out, _ = run(capsys, "admin", "device", "revoke", device.name if by == "name" else device.device_id, "--json")

    assert code == 0
    assert json.loads(out) == {"device_id": device.device_id, "name": "edge-1", "revoked": True}
    with Store.open(db) as store:
        assert store.authenticate(device.token).revoked is True
    code, out, _ = run(capsys, "admin", "device", "revoke", "edge-1")
    assert code == 0 and "was revoked already" in out
    code, out, _ = run(capsys, "admin", "device", "list")
    assert "revoked" in out


def test_device_revoke_of_an_unknown_device_is_a_usage_error(db, capsys):
    code, out, err = run(capsys, "admin", "device", "revoke", "edge-9")

    assert (code, out) == (2, "")
    assert err.startswith("infermeter: no device named or with id 'edge-9'") and err.count("\n") == 1


def test_device_rotate_starts_a_rotation(db, capsys):
    with Store.open(db) as store:
        device = store.add_device("edge-1")

    code, out, _ = run(capsys, "admin", "device", "rotate", "edge-1", "--json")

    assert code == 0
    assert json.loads(out) == {"device_id": device.device_id, "name": "edge-1", "rotating": True}
    with Store.open(db) as store:
        assert store.authenticate(device.token).rotation is not None
    assert "rotating" in run(capsys, "admin", "device", "list")[1]
    # One rotation at a time: the next starts once the device has pushed with its new token.
    code, out, err = run(capsys, "admin", "device", "rotate", device.device_id)
    assert (code, out) == (2, "")
    assert "under way" in err and err.count("\n") == 1


def test_device_rotate_of_a_revoked_or_unknown_device_is_a_usage_error(db, capsys):
    run(capsys, "admin", "device", "add", "edge-1")
    run(capsys, "admin", "device", "revoke", "edge-1")

    for name, says in (("edge-1", "revoked"), ("edge-9", "no device named or with id 'edge-9'")):
        code, out, err = run(capsys, "admin", "device", "rotate", name)
        assert (code, out) == (2, "")
        assert says in err and err.count("\n") == 1


def stored_admin_tokens(db: str) -> list[sa.Row]:
    engine = sa.create_engine(db)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(admin_tokens)).all()
    finally:
        engine.dispose()


def test_token_add_shows_the_token_once_and_stores_only_its_hash(db, capsys):
    code, out, err = run(capsys, "admin", "token", "add", "--role", "viewer", "--name", "grafana")

    assert (code, err) == (0, "")
    (token,) = [line.strip() for line in out.splitlines() if line.strip().startswith(tokens.ADMIN_TOKEN_PREFIX)]
    assert "shown only this once" in out
    with Store.open(db) as store:
        auth = store.authenticate_admin(token)
    assert (auth.name, auth.role, auth.revoked) == ("grafana", "viewer", False)
    (row,) = stored_admin_tokens(db)
    assert row.token_sha256 == tokens.token_sha256(token)
    assert not any(token in str(value) for value in row)
    code, out, _ = run(capsys, "admin", "token", "list")
    assert code == 0 and token not in out
    assert [auth.token_id, "grafana", "viewer"] == out.splitlines()[1].split()[:3] and "active" in out


def test_token_add_and_list_json(db, capsys):
    code, out, _ = run(capsys, "admin", "token", "add", "--role", "admin", "--json")

    assert code == 0
    added = json.loads(out)
    assert set(added) == {"token_id", "name", "role", "token"}
    assert (added["role"], added["name"]) == ("admin", "")
    code, out, _ = run(capsys, "admin", "token", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)["tokens"]
    assert listed == {
        "token_id": added["token_id"], "name": "", "role": "admin",
        "created_unix_ns": listed["created_unix_ns"], "revoked": False,
    }
    assert added["token"] not in out


@pytest.mark.parametrize("by", ["name", "id"])
def test_token_revoke_refuses_the_token(db, capsys, by):
    added = json.loads(run(capsys, "admin", "token", "add", "--role", "viewer", "--name", "ci", "--json")[1])

    code, out, _ = run(capsys, "admin", "token", "revoke", "ci" if by == "name" else added["token_id"], "--json")

    assert code == 0
    assert json.loads(out) == {"token_id": added["token_id"], "name": "ci", "revoked": True}
    with Store.open(db) as store:
        assert store.authenticate_admin(added["token"]).revoked is True
    code, out, _ = run(capsys, "admin", "token", "revoke", added["token_id"])
    assert code == 0 and "was revoked already" in out
    assert "revoked" in run(capsys, "admin", "token", "list")[1]


def test_token_revoke_by_a_name_two_tokens_share_is_refused(db, capsys):
    for _ in range(2):
        run(capsys, "admin", "token", "add", "--role", "viewer", "--name", "shared")

    code, out, err = run(capsys, "admin", "token", "revoke", "shared")

    assert (code, out) == (2, "")
    assert "2 admin tokens have the name 'shared'" in err and err.count("\n") == 1
    assert [row.revoked_unix_ns for row in stored_admin_tokens(db)] == [None, None]


@pytest.mark.parametrize("argv", [
    ("admin", "token", "add", "--role", "root"),
    ("admin", "token", "add"),
    ("admin", "token", "add", "--role", "viewer", "--name", "has space"),
    ("admin", "token", "revoke", "adm_0000000000000000"),
], ids=["unknown-role", "no-role", "bad-name", "unknown-token"])
def test_token_usage_errors_exit_2(db, capsys, argv):
    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert "Traceback" not in err
    assert stored_admin_tokens(db) == []


def test_report_costs_json_is_the_http_apis_object(db, capsys):
    store = with_records(db)
    try:
        with ServersThread(store) as running:
            http = http_get(f"{running.http_url}/api/v1/costs?group_by=model,device", store)
    finally:
        store.close()

    code, out, _ = run(capsys, "report", "costs", "--group-by", "model,device", "--json")

    assert code == 0
    assert json.loads(out) == http


def test_report_costs_table(db, capsys):
    with_records(db).close()

    code, out, _ = run(capsys, "report", "costs", "--group-by", "model,tag:project", "--since", "2026-01-01",
                       "--until", "2026-11-19")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["model", "tag:project", "inferences", "usage", "idle", "fixed", "total", "energy",
                                "Wh", "total", "per", "1k"]
    assert [line.split()[:3] for line in lines[1:4]] == [["bert", "search", "3"], ["resnet50", "search", "3"], ["total", "6", lines[3].split()[2]]]
    assert "6 records" in lines[-1]


def test_report_costs_per_day_with_the_top_model_json_is_the_http_apis_object(db, capsys):
    store = with_records(db)
    try:
        with ServersThread(store) as running:
            http = http_get(
                f"{running.http_url}/api/v1/costs?group_by=model&granularity=day&top=1&until=2026-11-19", store
            )
    finally:
        store.close()

    code, out, _ = run(capsys, "report", "costs", "--group-by", "model", "--granularity", "day", "--top", "1",
                       "--until", "2026-11-19", "--json")

    assert code == 0
    assert json.loads(out) == http
    assert [(g["period"], g["key"], g["other"]) for g in http["groups"]] == [
        ("2026-11-18T00:00:00Z", ["bert"], False), ("2026-11-18T00:00:00Z", [], True),
    ]


def test_report_costs_table_per_hour_with_the_rest_as_other(db, capsys):
    with_records(db).close()

    code, out, _ = run(capsys, "report", "costs", "--group-by", "model", "--granularity", "hour", "--top", "1",
                       "--until", "2026-11-18T12:00:00Z")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["period", "model", "inferences", "usage"]
    assert [line.split()[:4] for line in lines[1:3]] == [["2026-11-18", "11:00", "bert", "3"],
                                                         ["2026-11-18", "11:00", "(other)", "3"]]
    assert lines[3].split()[:2] == ["total", "6"]
    assert lines[-1].endswith("; periods are UTC hours; (other) sums the groups beyond the top 1")


@pytest.mark.parametrize(("granularity", "period"), [("day", "2026-11-18"), ("month", "2026-11")])
def test_report_costs_table_shows_periods_as_the_granularity_reads(db, capsys, granularity, period):
    with_records(db).close()

    code, out, _ = run(capsys, "report", "costs", "--granularity", granularity)

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["period", "inferences"]
    assert lines[1].split()[:2] == [period, "6"]


@pytest.mark.parametrize(
    "argv",
    [
        ("report", "costs", "--granularity", "week"),
        ("report", "costs", "--top", "0"),
        ("report", "costs", "--top", "ten"),
        ("report", "costs", "--top", "1000001"),
    ],
    ids=["granularity", "top-zero", "top-text", "top-too-large"],
)
def test_report_costs_bad_granularity_or_top_exit_2(db, capsys, argv):
    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ("report", "costs", "--group-by", "colour"),
        ("report", "costs", "--group-by", "model,,device"),
        ("report", "costs", "--since", "yesterday"),
        ("report", "costs", "--since", "2026-12-01", "--until", "2026-11-01"),
        ("report", "costs", "--db", "mysql+nodriver://x/y"),
        ("report", "costs", "--db", "not a url"),
        ("collector", "serve", "--grpc", "localhost"),
        ("admin", "pricebook", "add", "book.json"),
    ],
    ids=["group-key", "empty-key", "since", "since-after-until", "unknown-driver", "not-a-url", "address", "no-date"],
)
def test_usage_errors_exit_2_with_one_line(db, capsys, argv):
    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("infermeter: ", "usage: ", "infermeter "))


@pytest.mark.parametrize(
    "argv", [("report", "costs"), ("admin", "device", "list"), ("admin", "pricebook", "list"), ("admin", "token", "list")]
)
def test_reading_commands_do_not_create_a_missing_database(tmp_path, capsys, argv):
    missing = tmp_path / "missing-dir" / "x.db"
    code, out, err = run(capsys, *argv, "--db", f"sqlite:///{missing}")

    assert (code, out) == (1, "")
    assert err.startswith(f"infermeter: no collector database at {missing}") and err.count("\n") == 1
    assert not missing.parent.exists()


def test_pricebook_add_json_and_toml(db, tmp_path, capsys):
    book = tmp_path / "book.json"
    book.write_text(json.dumps(PRICE_BOOK))
    toml = tmp_path / "book.toml"
    toml.write_text(
        'currency = "EUR"\n[hardware.default]\npurchase = "1300.00"\nresidual = "0"\nlifetime_years = 4\n'
        'upkeep_per_year = "0"\n[energy.default]\nkwh = "0.30"\npue = "1.0"\n'
    )

    # A new currency must price every record, so its first book starts at the earliest date.
    assert run(capsys, "admin", "pricebook", "add", str(book), "--effective-from", "2026-01-01")[0] == 2
    assert run(capsys, "admin", "pricebook", "add", str(book), "--effective-from", "2000-01-01")[0] == 0
    code, out, _ = run(capsys, "admin", "pricebook", "add", str(toml), "--effective-from", "2026-07-01T00:00:00Z", "--json")
    assert code == 0
    assert json.loads(out)["effective_from_unix_ns"] == 1_782_864_000 * 10**9

    code, out, _ = run(capsys, "admin", "pricebook", "list", "--json")
    assert code == 0
    assert [book["currency"] for book in json.loads(out)["price_books"]] == ["USD", "EUR", "EUR"]
    code, out, _ = run(capsys, "admin", "pricebook", "list")
    assert "2026-07-01" in out
    code, out, _ = run(capsys, "admin", "pricebook", "show", "3", "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["id"], shown["currency"], shown["document"]["hardware"]["default"]["purchase"]) == (3, "EUR", "1300.00")
    code, out, _ = run(capsys, "admin", "pricebook", "show", "3")
    assert code == 0 and "1300.00" in out
    code, _, err = run(capsys, "admin", "pricebook", "show", "99")
    assert code == 2 and "99" in err


def test_report_costs_usage_only_leaves_out_idle_capacity(db, capsys):
    with_records(db).close()

    code, out, _ = run(capsys, "report", "costs", "--until", "2026-11-18T12:00:00Z", "--json")
    both = json.loads(out)
    code, out, _ = run(capsys, "report", "costs", "--until", "2026-11-18T12:00:00Z", "--usage-only", "--json")
    usage = json.loads(out)

    assert code == 0
    assert Decimal(both["idle_cost"]) > 0 and Decimal(usage["idle_cost"]) == 0
    assert usage["total_cost"] == both["usage_cost"]


@pytest.mark.parametrize(
    "name, text, exit_code",
    [
        ("book.json", "{not json", 2),
        ("book.toml", "currency = ", 2),
        ("book.json", "[1, 2]", 2),
        ("book.json", json.dumps({**PRICE_BOOK, "currency": "XXX"}), 2),
        ("book.json", json.dumps({**PRICE_BOOK, "energy": {"default": {"kwh": 0.1, "pue": "1"}}}), 2),
        ("missing.json", None, 1),
    ],
    ids=["bad-json", "bad-toml", "not-an-object", "bad-currency", "float-money", "missing"],
)
def test_pricebook_add_bad_file(db, tmp_path, capsys, name, text, exit_code):
    if text is not None:
        (tmp_path / name).write_text(text)

    code, out, err = run(capsys, "admin", "pricebook", "add", str(tmp_path / name), "--effective-from", "2026-01-01")

    assert (code, out) == (exit_code, "")
    assert err.startswith("infermeter: ") and err.count("\n") == 1


def test_every_command_has_help_with_examples(capsys):
    for argv in (
        ["collector", "serve"], ["admin", "device", "add"], ["admin", "device", "list"], ["admin", "device", "revoke"],
        ["admin", "device", "rotate"], ["admin", "token", "add"], ["admin", "token", "list"], ["admin", "token", "revoke"],
        ["admin", "pricebook", "add"], ["admin", "pricebook", "list"], ["report", "costs"],
    ):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*argv, "--help"])
        assert exit_.value.code == 0
        assert "examples:" in capsys.readouterr().out, argv


def test_the_module_imports_only_the_standard_library():
    code = (
        "import sys; import collector.cli; "
        "print(sorted(m for m in ('aiohttp', 'sqlalchemy', 'grpc', 'google.protobuf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_the_collector_extra_the_command_says_how_to_install_it(tmp_path):
    # None in sys.modules makes `import sqlalchemy` fail as if it were not installed.
    code = (
        "import sys; sys.modules['sqlalchemy'] = sys.modules['aiohttp'] = None; "
        "from agent.cli import main; sys.exit(main(['report', 'costs']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr == "infermeter: the collector is not installed: pip install 'infermeter[collector]'\n"


def test_format_cost_report_aligns_columns():
    zero = {"discount": "0", "idle_cost": "0", "fixed_cost": "0"}
    report = {
        "group_by": ["model"], "currency": "USD", "total_cost": "1334.5678", "total_inferences": 3000,
        "total_records": 3000, "usage_cost": "1234.5678", "list_cost": "1234.5678", **zero, "idle_cost": "100",
        "groups": [
            {"key": ["tiny-mlp"], "inferences": 1000, "records": 1000, "cost": "1234.5", "compute_cost": "1234.5",
             "energy_cost": "0", "energy_uj": 0, "duration_ns": 0, "cpu_time_ns": 0, **zero, "idle_cost": "100",
             "total_cost": "1334.5"},
            {"key": [""], "inferences": 2000, "records": 2000, "cost": "0.0678", "compute_cost": "0.000001234567",
             "energy_cost": "0.067798765433", "energy_uj": 1_800_000_000, "duration_ns": 0, "cpu_time_ns": 0,
             **zero, "total_cost": "0.0678"},
        ],
    }

    lines = format_cost_report(report).splitlines()

    assert lines[0].split() == ["model", "inferences", "usage", "idle", "fixed", "total", "energy", "Wh", "total",
                                "per", "1k"]
    assert lines[1].split() == ["tiny-mlp", "1000", "1234.50", "100.00", "0", "1334.50", "0", "1334.50"]
    assert lines[2].split() == ["-", "2000", "0.06780", "0", "0", "0.06780", "0.5000", "0.03390"]
    assert lines[3].split() == ["total", "3000", "1234.57", "100.00", "0", "1334.57", "0.5000", "444.86"]
    assert len({len(line) for line in lines[:4]}) == 1  # right-aligned numbers: equal widths
    assert lines[4] == "3000 records; amounts in USD (--json for every digit); - is no value: a record may lack a tag"
