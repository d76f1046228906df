from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load_config, parse_tags

FULL = """
buffer = "/data/buffer.db"
[tags]
site = "plant-3"
[collector]
address = "collector:50051"
token_file = "/etc/infermeter/device.token"
timeout_s = 5
[shipper]
batch_size = 500
interval_s = 0.5
"""


def test_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(FULL)
    config = load_config(
        path,
        env={"INFERMETER_TAGS": "user=alice,site=plant-4", "INFERMETER_COLLECTOR": "other:1"},
        overrides={"buffer_path": Path("/flag.db"), "collector_address": None},
    )
    assert config.buffer_path == Path("/flag.db")
    assert config.collector_address == "other:1"
    assert config.tags == {"site": "plant-4", "user": "alice"}
    assert (config.timeout_s, config.batch_size, config.interval_s) == (5.0, 500, 0.5)
    assert config.token_file == Path("/etc/infermeter/device.token")


def test_defaults_without_a_file():
    assert load_config(env={}) == AgentConfig()


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('buffer = "/x.db"\n')
    assert load_config(env={"INFERMETER_CONFIG": str(path)}).buffer_path == Path("/x.db")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colector = 1", "unknown key colector"),
        ("[collector]\nadress = 'x'", "unknown key collector.adress"),
        ("[shipper]\nbatch_size = '10'", "shipper.batch_size must be a int"),
        ("[shipper]\nbatch_size = 0", "batch_size must be at least 1"),
        ("[shipper]\ninterval_s = -1", "must not be negative"),
        ("[shipper]\nbatch_size = true", "must be a int"),
        ("[tags]\nsite = 3", "[tags] must map names to strings"),
        ("buffer = ", "is not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml", env={})


def test_parse_tags():
    assert parse_tags(" a=1, b = two ,") == {"a": "1", "b": "two"}
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_tags("a=1,b")


def test_token_is_read_when_needed(tmp_path):
    token_file = tmp_path / "token"
    config = AgentConfig(token_file=token_file)
    with pytest.raises(ConfigError, match="cannot read the device token"):
        config.device_token()
    token_file.write_text("imd_one\n")
    assert config.device_token() == "imd_one"
    token_file.write_text("imd_two\n")  # rotated on disk: picked up without a restart
    assert config.device_token() == "imd_two"
    token_file.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        config.device_token()
    with pytest.raises(ConfigError, match="no device token"):
        AgentConfig().device_token()


def test_the_shipped_example_config_is_valid():
    example = Path(__file__).resolve().parents[2] / "packaging" / "agent.toml"
    config = load_config(example, env={})
    assert config.buffer_path == Path("/var/lib/infermeter/buffer.db")
    assert config.collector_address == "collector.example.com:50051"


ENERGY = """
[energy]
enabled = false
sensors = ["rapl", "nvml"]
sample_period_s = 0.5
slack_s = 2
triton_metrics_url = "http://localhost:8002/metrics"
[energy.estimate]
idle_w_per_cpu = 1
max_w_per_cpu = 4.5
w_per_memory_gb = 0.5
"""


def test_energy_tables(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(ENERGY)
    config = load_config(path, env={})
    assert (config.energy_enabled, config.energy_sensors) == (False, ("rapl", "nvml"))
    assert (config.sample_period_s, config.attribution_slack_s) == (0.5, 2.0)
    assert config.triton_metrics_url == "http://localhost:8002/metrics"
    assert (config.idle_w_per_cpu, config.max_w_per_cpu, config.w_per_memory_gb) == (1.0, 4.5, 0.5)
    assert type(config.idle_w_per_cpu) is float


def test_energy_defaults_sample_every_sensor_found():
    config = AgentConfig()
    assert (config.energy_enabled, config.energy_sensors, config.sample_period_s) == (True, ("auto",), 0.1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[energy]\nsampling = 1", "unknown key energy.sampling"),
        ("[energy.estimate]\ntdp_w = 1", "unknown key energy.estimate.tdp_w"),
        ("[energy]\nestimate = 3", "unknown key energy.estimate"),
        ("[energy]\nenabled = 'yes'", "energy.enabled must be true or false"),
        ("[energy]\nsensors = 'auto'", "energy.sensors must be a list of strings"),
        ("[energy]\nsensors = ['rapl', 3]", "energy.sensors must be a list of strings"),
        ("[energy]\nsensors = ['rapl', 'nvidia']", "unknown sensor family 'nvidia'"),
        ("[energy]\nsample_period_s = 'fast'", "energy.sample_period_s must be a float"),
        ("[energy]\nsample_period_s = 0.001", "sample_period_s must be from 0.01 to 60 seconds"),
        ("[energy]\nsample_period_s = 61", "sample_period_s must be from 0.01 to 60 seconds"),
        ("[energy]\nslack_s = -1", "energy.slack_s must not be negative"),
        ("[energy]\ntriton_metrics_url = 8002", "energy.triton_metrics_url must be a str"),
        ("[energy.estimate]\nidle_w_per_cpu = nan", "energy.estimate.idle_w_per_cpu must be a finite number"),
        ("[energy.estimate]\nmax_w_per_cpu = inf", "energy.estimate.max_w_per_cpu must be a finite number"),
        ("[energy.estimate]\nw_per_memory_gb = true", "energy.estimate.w_per_memory_gb must be a float"),
        ("[energy.estimate]\nidle_w_per_cpu = 5", "max_w_per_cpu must not be below idle_w_per_cpu"),
    ],
)
def test_bad_energy_settings_name_the_key(tmp_path, text, message):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path, env={})


@pytest.mark.parametrize("period_s", [0.01, 60])
def test_sample_period_bounds_are_inclusive(tmp_path, period_s):
    path = tmp_path / "agent.toml"
    path.write_text(f"[energy]\nsample_period_s = {period_s}")
    assert load_config(path, env={}).sample_period_s == period_s
