// The collector's dashboard: read-only views over the /api/v1 reports. Every figure comes from
// the API as it answers; money strings are shown as given (trailing zeros trimmed), never
// re-added. The only derived figures are the per-inference ratios, labelled as such, and
// changes of unit (µJ to mJ, ns to ms, bytes to MiB).
"use strict";

const TOKEN_KEY = "infermeter.token";
const SPEND_TOP = 8;
const TOP = 5;
const COLOURS = ["#1d3557", "#e63946", "#2a9d8f", "#f4a261", "#6d597a", "#457b9d", "#e9c46a", "#8d99ae", "#bcb8b1"];

const $ = (id) => document.getElementById(id);
const charts = {};

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `the collector answered HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, value]) => value !== "" && value != null));
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, body);
  }
  return { body, text };
}

// "0.010920000000" -> "0.01092": the API's digits, without the trailing zeros past two places.
function money(text) {
  if (typeof text !== "string" || !text.includes(".")) {
    return String(text);
  }
  return text.replace(/(\.\d\d\d*?)0+$/, "$1");
}

function integer(value) {
  return Number(value).toLocaleString("en-US");
}

function when(unixNs) {
  if (unixNs == null) {
    return "never";
  }
  return new Date(Number(unixNs) / 1e6).toISOString().replace(".000Z", "Z");
}

function groupLabel(group) {
  return group.other ? "other" : group.key.join(" / ") || "(none)";
}

function cell(row, text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) {
    td.className = "number";
  }
  row.appendChild(td);
  return td;
}

function fillTable(id, items, columns) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    for (const [value, numeric] of columns(item)) {
      if (value instanceof Node) {
        cell(row, "").appendChild(value);
      } else {
        cell(row, value, numeric);
      }
    }
    body.appendChild(row);
  }
}

function drawChart(name, config) {
  if (charts[name]) {
    charts[name].destroy();
  }
  config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
  charts[name] = new Chart($(`${name}-chart`), config);
}

function filters() {
  const group = $("group").value === "tag" ? `tag:${$("tag-key").value.trim()}` : $("group").value;
  return { group_by: group, since: $("since").value, until: $("until").value, granularity: $("granularity").value };
}

async function loadSpend(currency) {
  const chosen = filters();
  const { body } = await api("/api/v1/costs", {
    group_by: chosen.group_by, since: chosen.since, until: chosen.until, granularity: chosen.granularity, top: SPEND_TOP,
  });
  const periods = [...new Set(body.groups.map((group) => group.period))];
  const series = new Map();
  for (const group of body.groups) {
    const label = groupLabel(group);
    if (!series.has(label)) {
      series.set(label, new Map());
    }
    series.get(label).set(group.period, group.total_cost);
  }
  const datasets = [...series.entries()].map(([label, byPeriod], index) => ({
    label,
    backgroundColor: COLOURS[index % COLOURS.length],
    totals: periods.map((period) => byPeriod.get(period) ?? null),
    data: periods.map((period) => (byPeriod.has(period) ? Number(byPeriod.get(period)) : 0)),
  }));
  drawChart("spend", {
    type: "bar",
    data: { labels: periods.map((period) => period.replace(":00:00Z", "Z").replace("T00Z", "")), datasets },
    options: {
      scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: body.currency } } },
      plugins: { tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${money(item.dataset.totals[item.dataIndex] ?? "0")}` } } },
    },
  });
  $("spend-total").textContent = `${body.currency} ${money(body.total_cost)} total, ${integer(body.total_inferences)} inferences`;
  $("spend-total").dataset.totalCost = body.total_cost;
  return body.currency || currency;
}

async function loadPerModel() {
  const chosen = filters();
  const { body } = await api("/api/v1/costs", { group_by: "model", since: chosen.since, until: chosen.until });
  const perInference = (value, count, scale) => (count ? (Number(value) * scale / count).toPrecision(4) : "-");
  // The top models come from the same answer: ordered by the API's total cost, none added up here.
  const top = [...body.groups].sort((a, b) => Number(b.total_cost) - Number(a.total_cost)).slice(0, TOP);
  fillTable("top-models", top, (group) => [[groupLabel(group)], [integer(group.inferences), true], [money(group.total_cost), true]]);
  fillTable("per-model", body.groups.filter((group) => group.inferences > 0), (group) => [
    [groupLabel(group)],
    [integer(group.inferences), true],
    [money(group.total_cost), true],
    [perInference(group.total_cost, group.inferences, 1), true],
    [(group.energy_uj / 1e6).toFixed(3), true],
    [perInference(group.energy_uj, group.inferences, 1e-3), true],
  ]);
}

async function loadTop(groupBy, table) {
  const chosen = filters();
  const { body } = await api("/api/v1/costs", { group_by: groupBy, since: chosen.since, until: chosen.until, top: TOP });
  fillTable(table, body.groups, (group) => [[groupLabel(group)], [integer(group.inferences), true], [money(group.total_cost), true]]);
}

function progressBar(status) {
  const bar = document.createElement("div");
  bar.className = `bar ${status.state}`;
  bar.title = `${status.percent}%`;
  const fill = document.createElement("span");
  fill.style.width = `${Math.min(Number(status.percent), 100)}%`;
  bar.appendChild(fill);
  const wrap = document.createElement("span");
  wrap.append(bar, ` ${status.percent}%`);
  return wrap;
}

async function loadBudgets() {
  const { body } = await api("/api/v1/budgets");
  const statuses = body.budgets;
  fillTable("budgets", statuses, (status) => [
    [status.budget.name], [status.budget.scope], [status.budget.period],
    [`${money(status.spent)} / ${money(status.budget.amount)} ${status.budget.unit}`, true],
    [progressBar(status)], [status.state], ["…", true],
  ]);
  const scopes = [...new Set(statuses.map((status) => status.budget.scope))];
  const select = $("forecast-scope");
  const chosen = select.value;
  select.replaceChildren(...["global", ...scopes.filter((scope) => scope !== "global")].map((scope) => new Option(scope, scope)));
  select.value = scopes.includes(chosen) ? chosen : "global";
  return { statuses, scopes };
}

async function loadProjections({ statuses, scopes }) {
  const rows = $("budgets").querySelectorAll("tbody tr");
  const answers = await Promise.all(scopes.map((scope) => api("/api/v1/forecasts", { scope }).catch((err) => err)));
  const projections = new Map();
  for (const answer of answers) {
    for (const projection of answer instanceof Error ? [] : answer.body.budgets) {
      projections.set(projection.budget, projection);
    }
  }
  statuses.forEach((status, index) => {
    const projection = projections.get(status.budget.name);
    const text = projection && projection.projected_total != null
      ? `${money(projection.projected_total)}${projection.exceeds_on ? ` (exceeds on ${projection.exceeds_on})` : ""}`
      : "-";
    rows[index].lastChild.textContent = text;
  });
}

async function loadForecast() {
  const { body } = await api("/api/v1/forecasts", { scope: $("forecast-scope").value });
  const points = body.forecast.points || [];
  const labels = [...body.history.map((day) => day.date), ...points.map((point) => point.date)];
  const pad = (values, before) => [...Array(before).fill(null), ...values];
  const history = body.history.length;
  $("forecast-note").textContent = `${body.unit} in ${body.currency}; forecast ${body.forecast.status}` +
    (body.forecast.model ? ` (${body.forecast.model}, ${Math.round(body.forecast.confidence * 100)}% band)` : "");
  drawChart("forecast", {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "spent", data: body.history.map((day) => Number(day.amount)), borderColor: COLOURS[0], pointRadius: 0 },
        { label: "low", data: pad(points.map((point) => Number(point.low)), history), borderColor: "transparent", pointRadius: 0 },
        { label: "high", data: pad(points.map((point) => Number(point.high)), history), borderColor: "transparent",
          backgroundColor: "rgba(42, 157, 143, 0.25)", fill: "-1", pointRadius: 0 },
        { label: "expected", data: pad(points.map((point) => Number(point.expected)), history), borderColor: COLOURS[2],
          borderDash: [4, 4], pointRadius: 0 },
      ],
    },
    options: { plugins: { legend: { labels: { filter: (item) => item.text !== "low" } } } },
  });
}

async function loadEvents() {
  const { body } = await api("/api/v1/budget-events", { limit: 100 });
  fillTable("events", [...body.events].reverse(), (event) => [
    [when(event.created_unix_ns)], [event.budget], [event.kind], [event.key], [event.details.message || JSON.stringify(event.details)],
  ]);
}

async function loadDevices() {
  const { body } = await api("/api/v1/devices");
  fillTable("devices", body.devices, (device) => [
    [device.name], [device.site], [device.profile], [when(device.last_seen_unix_ns)], [integer(device.records), true],
    [device.revoked ? "revoked" : "active"],
  ]);
}

// FinOps insights: loaded after the main view, over the same since/until.

function range() {
  const chosen = filters();
  return { since: chosen.since, until: chosen.until };
}

async function loadChargeback() {
  const { body } = await api("/api/v1/chargeback", { ...range(), by: $("chargeback-by").value.trim() });
  $("chargeback-total").textContent = `${body.currency} ${money(body.total_cost)} in ${body.lines.length} lines`;
  $("chargeback-total").dataset.totalCost = body.total_cost;
  fillTable("chargeback", body.lines, (line) => [
    [body.by.map((key) => line.tags[key] ?? "").join(" / ")], [line.kind], [integer(line.inferences), true],
    [money(line.usage_cost), true], [money(line.idle_cost), true], [money(line.fixed_cost), true],
    [money(line.total_cost), true],
  ]);
}

function policyMisses(tags) {
  return Object.entries(tags).map(([key, found]) => {
    const values = found.values.length ? ` (${found.values.join(", ")})` : "";
    return `${key}: ${found.missing} missing, ${found.disallowed} not allowed${values}`;
  }).join("; ");
}

async function loadUntagged() {
  const { body } = await api("/api/v1/untagged", range());
  $("untagged-total").textContent = body.policy.version
    ? `${body.currency} ${money(body.untagged_cost)} of ${money(body.total_cost)}; ` +
      `${integer(body.untagged_records)} of ${integer(body.records)} records (policy v${body.policy.version})`
    : "no tag policy set: every record counts as tagged";
  fillTable("untagged", body.groups, (group) => [
    [group.device], [group.model], [integer(group.records), true], [money(group.total_cost), true], [policyMisses(group.tags)],
  ]);
}

async function loadKpis() {
  const { body } = await api("/api/v1/reports/kpis", range());
  const orDash = (text) => (text == null ? "-" : money(text));
  fillTable("kpis", body.kpis, (kpi) => [
    [kpi.name], [kpi.unit], [integer(kpi.total.units), true], [money(kpi.total.cost), true],
    [orDash(kpi.total.cost_per_unit), true], [orDash(kpi.total.value), true], [orDash(kpi.total.roi), true],
  ]);
}

async function loadModels() {
  const { body } = await api("/api/v1/models");
  fillTable("models", body.models, (model) => {
    const flags = [
      model.sprawl ? `${model.active_versions.length} versions running` : "",
      model.outdated_in_production.length ? `outdated in production: ${model.outdated_in_production.join(", ")}` : "",
    ].filter(Boolean).join("; ");
    return [
      [model.model], [model.latest_version], [model.active_versions.join(", ")], [flags || "-"],
      [integer(model.devices.length), true], [integer(model.inferences), true], [money(model.cost), true],
    ];
  });
  const select = $("rightsize-model");
  const chosen = select.value;
  const comparable = body.models.filter((model) => model.variants.length > 1).map((model) => model.model);
  select.replaceChildren(...comparable.map((name) => new Option(name, name)));
  select.value = comparable.includes(chosen) ? chosen : (comparable[0] ?? "");
  await loadRightSizing();
}

function milliseconds(ns) {
  return ns == null ? "-" : (ns / 1e6).toFixed(2);
}

async function loadRightSizing() {
  const model = $("rightsize-model").value;
  if (!model) {
    $("rightsize-note").textContent = "no model runs in more than one variant";
    fillTable("rightsize", [], () => []);
    return;
  }
  const { body } = await api("/api/v1/reports/right-sizing", { model, ...range() });
  $("rightsize-note").textContent = `moving all of ${model}'s traffic to its cheapest variant would save ` +
    `${body.currency} ${money(body.monthly_saving)} a month at the current volume`;
  $("rightsize-note").dataset.saving = body.monthly_saving;
  fillTable("rightsize", body.variants, (variant) => [
    [variant.version || "(none)"], [variant.execution_provider], [variant.cheapest ? "cheapest" : ""],
    [integer(variant.inferences), true], [money(variant.cost_per_inference), true],
    [(Number(variant.energy_uj_per_inference) / 1000).toFixed(3), true],
    [`${milliseconds(variant.p50_latency_ns)} / ${milliseconds(variant.p95_latency_ns)}`, true],
    [money(variant.monthly_saving), true],
  ]);
}

async function loadShadow() {
  const { body } = await api("/api/v1/shadow-processes");
  const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  $("shadow-total").textContent = `${count(body.processes.length, "process", "processes")} that meter nothing, on ` +
    `${count(body.devices.length, "device", "devices")} reporting; about ${body.currency} ` +
    `${money(body.estimated_cost_per_hour)} an hour`;
  fillTable("shadow", body.processes, (process) => [
    [process.device], [String(process.pid), true], [process.user], [process.command], [process.runtimes.join(", ")],
    [(process.rss_bytes / 2 ** 20).toFixed(1), true], [process.cpu_cores_busy, true],
    [money(process.estimated_cost_per_hour), true],
  ]);
}

function insights() {
  return [loadChargeback(), loadUntagged(), loadKpis(), loadModels(), loadShadow()];
}

function showError(err) {
  $("error").textContent = err.message;
  if (err.status === 401) {
    logout(err.message);
  }
}

async function load() {
  $("error").textContent = "";
  document.body.dataset.state = "loading";
  document.body.dataset.forecast = "loading";
  const steps = [loadSpend(), loadPerModel(), loadTop("device", "top-devices"), loadEvents(), loadDevices()];
  const budgets = loadBudgets();
  const results = await Promise.allSettled([...steps, budgets]);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) {
    showError(failed.reason);
  }
  performance.mark("charts-drawn");
  document.body.dataset.state = failed ? "failed" : "ready";
  const later = await Promise.allSettled([
    loadForecast(), budgets.then(loadProjections), ...insights(),
  ]);
  const laterFailed = later.find((result) => result.status === "rejected");
  if (laterFailed && !failed) {
    showError(laterFailed.reason);
  }
  document.body.dataset.forecast = "ready";
}

function showMain(loggedIn) {
  $("login").hidden = loggedIn;
  $("main").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
}

function logout(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  showMain(false);
  $("login-error").textContent = message;
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("login-error").textContent = "";
  try {
    await api("/api/v1/devices");
  } catch (err) {
    logout(err.message);
    return;
  }
  $("token").value = "";
  showMain(true);
  await load();
}

async function explain(event) {
  event.preventDefault();
  $("explain-error").textContent = "";
  $("explain").textContent = "";
  const path = `/api/v1/records/${encodeURIComponent($("explain-stream").value.trim())}/${encodeURIComponent($("explain-seq").value.trim())}/explain`;
  try {
    // The raw text: JSON.parse would round the nanosecond times.
    $("explain").textContent = (await api(path, { device: $("explain-device").value.trim() })).text;
  } catch (err) {
    $("explain-error").textContent = err.message;
  }
}

function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout());
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("forecast-scope").addEventListener("change", () => loadForecast().catch(showError));
  $("rightsize-model").addEventListener("change", () => loadRightSizing().catch(showError));
  $("chargeback-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadChargeback().catch(showError);
  });
  $("explain-form").addEventListener("submit", explain);
  window.infermeterCharts = charts;
  if (sessionStorage.getItem(TOKEN_KEY)) {
    showMain(true);
    load();
  } else {
    showMain(false);
    document.body.dataset.state = "login";
  }
}

start();
