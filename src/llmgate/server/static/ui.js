// llmgate's dashboard: polls the gateway's own APIs and draws them. Every value reaches the page as
// text (textContent), never as markup: names and error texts can come from callers.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const KEY_ROWS = 200; // keys shown at once (filter to find others)
  const state = { key: sessionStorage.getItem("llmgate-key") || "", open: false, charts: {}, timer: null };
  const $ = (id) => document.getElementById(id);

  // --- talking to the gateway -------------------------------------------------------------------------

  async function get(path) {
    const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
    const reply = await fetch(path, { headers, cache: "no-store" });
    if (!reply.ok) {
      const error = new Error(path + ": " + reply.status);
      error.status = reply.status;
      throw error;
    }
    return reply.json();
  }

  async function signIn(key) {
    state.key = key;
    try {
      const health = await get("/health/providers");
      if (!health) throw new Error("no answer");
      await get("/admin/keys"); // the master key only
      sessionStorage.setItem("llmgate-key", key);
      return true;
    } catch (error) {
      state.key = "";
      sessionStorage.removeItem("llmgate-key");
      return false;
    }
  }

  // --- formatting -------------------------------------------------------------------------------------

  const number = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  const percent = (x) => (x == null ? "–" : (100 * x).toFixed(x < 0.1 ? 2 : 1) + "%");
  const usd = (x) => (x == null ? "–" : "$" + (x < 1 ? Number(x).toFixed(4) : Number(x).toFixed(2)));
  const ms = (x) => (x == null ? "–" : Number(x) < 10 ? Number(x).toFixed(1) : Math.round(Number(x)).toString());

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function bar(row, fraction) {
    const td = document.createElement("td");
    const outer = document.createElement("div");
    outer.className = "bar";
    const inner = document.createElement("span");
    inner.style.width = Math.max(0, Math.min(100, 100 * fraction)).toFixed(1) + "%";
    if (fraction > 0.9) inner.className = "hot";
    outer.appendChild(inner);
    td.appendChild(outer);
    row.appendChild(td);
  }

  function fill(tableId, rows, render) {
    const body = document.querySelector("#" + tableId + " tbody");
    const fresh = document.createElement("tbody");
    rows.forEach((item) => {
      const row = document.createElement("tr");
      render(row, item);
      fresh.appendChild(row);
    });
    body.replaceWith(fresh);
  }

  // --- charts -----------------------------------------------------------------------------------------

  const PALETTE = ["#4c9aff", "#3fb68b", "#e0a72e", "#e5534b", "#b07cf7", "#4dd0e1", "#f06292", "#aed581"];

  function chart(id, series, data) {
    const element = $(id);
    const width = Math.max(300, element.clientWidth || 440);
    const old = state.charts[id];
    const shape = series.map((s) => s.label).join("|");
    if (old && old.shape === shape) {
      old.plot.setData(data);
      if (Math.abs(old.plot.width - width) > 4) old.plot.setSize({ width, height: 220 });
      return;
    }
    if (old) old.plot.destroy();
    const options = {
      width,
      height: 220,
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: false } }))],
      axes: [
        { stroke: "#8a99a8", grid: { stroke: "#263240" }, ticks: { stroke: "#263240" } },
        { stroke: "#8a99a8", grid: { stroke: "#263240" }, ticks: { stroke: "#263240" }, size: 60 },
      ],
      legend: { live: true },
    };
    state.charts[id] = { shape, plot: new uPlot(options, data, element) };
  }

  // Rows of /api/usage/series -> uPlot data: one x (slot starts, zeros filled) and one y per group.
  function seriesData(rows, step, since, value, groups) {
    const now = Date.now() / 1000;
    const xs = [];
    for (let t = Math.floor(since / step) * step; t <= now; t += step) xs.push(t);
    const index = new Map(xs.map((t, i) => [t, i]));
    const names = groups || [...new Set(rows.map((r) => r.group))].sort();
    const ys = names.map(() => xs.map(() => 0));
    rows.forEach((r) => {
      const i = index.get(r.at);
      const g = names.indexOf(r.group);
      if (i !== undefined && g >= 0) ys[g][i] = value(r);
    });
    return { names, data: [xs, ...ys] };
  }

  // --- refreshing -------------------------------------------------------------------------------------

  async function refresh() {
    const window = Number($("window").value);
    const since = Date.now() / 1000 - window;
    const step = window <= 3600 ? 60 : window <= 21600 ? 300 : 900;
    try {
      const query = "since=" + since.toFixed(0) + "&step=" + step;
      const [health, providers, stats, all, byProvider, byGroup, cache] = await Promise.all([
        get("/health"),
        get("/health/providers"),
        get("/api/stats?window=" + window),
        get("/api/usage/series?" + query + "&group_by=all"),
        get("/api/usage/series?" + query + "&group_by=provider"),
        get("/api/usage/series?" + query + "&group_by=group"),
        get("/health/cache"),
      ]);
      drawHealth(health, providers.deployments);
      drawCards(stats, window);
      drawCharts(all.rows, byProvider.rows, byGroup.rows, step, since);
      drawCache(cache);
      await drawKeysAndErrors(since);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      if (error.status === 401 || error.status === 403) return showSignIn("The key was refused.");
      $("updated").textContent = "update failed: " + error.message;
    }
  }

  function drawHealth(health, deployments) {
    const pill = $("status");
    pill.textContent = health.status;
    pill.className = "pill " + health.status;
    const problems = health.problems || [];
    const list = document.createElement("ul");
    list.id = "problems";
    list.className = "list";
    (problems.length ? problems : ["none"]).forEach((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      if (!problems.length) item.className = "none";
      list.appendChild(item);
    });
    $("problems").replaceWith(list);
    const unhealthy = deployments.filter((d) => d.state !== "healthy").length;
    $("c-deployments").textContent = number(deployments.length);
    $("c-unhealthy").textContent = unhealthy ? unhealthy + " not healthy" : "all healthy";
    const filter = $("filter-deployments").value.toLowerCase();
    const shown = deployments
      .filter((d) => !filter || (d.deployment + " " + d.provider + " " + d.state).toLowerCase().includes(filter))
      .sort((a, b) => (a.state === "healthy") - (b.state === "healthy") || b.error_rate - a.error_rate);
    fill("deployments", shown, (row, d) => {
      cell(row, d.deployment);
      cell(row, d.provider);
      cell(row, d.state, "state " + d.state);
      cell(row, number(d.requests));
      cell(row, percent(d.error_rate));
      cell(row, ms(d.latency_p50_ms));
      cell(row, ms(d.latency_p95_ms));
      cell(row, number(d.in_flight));
      cell(row, d.last_error || "", "wrap");
    });
  }

  function drawCards(stats, window) {
    $("c-requests").textContent = number(stats.total_requests);
    $("c-rate").textContent = (stats.total_requests / (window / 60)).toFixed(1) + " per minute";
    $("c-errors").textContent = percent(stats.error_rate);
    $("c-errcount").textContent = number(stats.total_errors) + " failed";
    const providers = Object.values(stats.providers || {});
    const p50 = Math.max(0, ...providers.map((p) => p.p50_latency_ms || 0));
    const p95 = Math.max(0, ...providers.map((p) => p.p95_latency_ms || 0));
    $("c-latency").textContent = providers.length ? ms(p50) + " / " + ms(p95) : "–";
    $("c-cost").textContent = usd(stats.total_cost);
    $("c-tokens").textContent = number(stats.total_tokens) + " tokens";
    $("c-cache").textContent = percent(stats.cache_hit_rate);
    $("c-saved").textContent = usd(stats.saved_usd) + " saved";
  }

  function drawCharts(all, byProvider, byGroup, step, since) {
    const perMinute = 60 / step;
    const requests = seriesData(all, step, since, (r) => r.requests * perMinute, ["all"]);
    const errors = seriesData(all, step, since, (r) => r.errors * perMinute, ["all"]);
    chart("chart-rate", [{ label: "requests" }, { label: "errors" }], [requests.data[0], requests.data[1], errors.data[1]]);
    const p50 = seriesData(all, step, since, (r) => r.p50_latency_ms, ["all"]);
    const p95 = seriesData(all, step, since, (r) => r.p95_latency_ms, ["all"]);
    chart("chart-latency", [{ label: "p50" }, { label: "p95" }], [p50.data[0], p50.data[1], p95.data[1]]);
    const cost = (r) => r.cost_usd * perMinute;
    const providers = seriesData(byProvider, step, since, cost);
    chart("chart-provider-cost", providers.names.map((label) => ({ label })), providers.data);
    const groups = seriesData(byGroup, step, since, cost);
    chart("chart-group-cost", groups.names.map((label) => ({ label })), groups.data);
  }

  function drawCache(cache) {
    const rows = cache.enabled
      ? [
          ["backend", cache.backend],
          ["entries", number(cache.entries)],
          ["hit rate", percent(cache.hit_rate)],
          ["hits / semantic / coalesced", [cache.hits, cache.semantic_hits, cache.coalesced].map(number).join(" / ")],
          ["misses", number(cache.misses)],
          ["saved", usd(cache.saved_usd)],
        ]
      : [["cache", "off"]];
    fill("cache", rows, (row, [name, value]) => {
      cell(row, name, "muted");
      cell(row, value);
    });
  }

  async function drawKeysAndErrors(since) {
    const [keys, usage, errors] = await Promise.all([
      state.open ? Promise.resolve({ keys: [] }) : get("/admin/keys"), // open mode has no keys
      get("/api/usage?group_by=key&since=" + since.toFixed(0)),
      get("/api/errors?limit=30"),
    ]);
    const spent = new Map(usage.rows.map((r) => [r.group, r]));
    const filter = $("filter-keys").value.toLowerCase();
    const rows = keys.keys
      .filter((k) => !k.revoked)
      .filter((k) => !filter || (k.id + " " + k.name).toLowerCase().includes(filter))
      .map((k) => ({ key: k, use: spent.get(k.id) || { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 } }))
      .sort((a, b) => b.use.cost_usd - a.use.cost_usd || b.use.requests - a.use.requests);
    $("keys-count").textContent = rows.length > KEY_ROWS ? KEY_ROWS + " of " + rows.length : rows.length + " keys";
    fill("keys", rows.slice(0, KEY_ROWS), (row, { key, use }) => {
      cell(row, key.id);
      cell(row, key.name);
      cell(row, number(use.requests));
      cell(row, number(use.errors));
      cell(row, number(use.prompt_tokens + use.completion_tokens));
      cell(row, usd(use.cost_usd));
      cell(row, key.budget_usd == null ? "–" : usd(key.budget_usd) + " / " + key.budget_period);
      if (key.budget_usd) bar(row, use.cost_usd / key.budget_usd);
      else cell(row, "");
    });
    fill("errors", errors.errors, (row, e) => {
      cell(row, new Date(e.time * 1000).toLocaleTimeString());
      cell(row, e.status);
      cell(row, e.error_type);
      cell(row, e.model_group);
      cell(row, e.key_id || "–");
      cell(row, e.tried || "", "wrap");
    });
  }

  // --- the page ---------------------------------------------------------------------------------------

  function showSignIn(message) {
    clearInterval(state.timer);
    $("board").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("key").focus();
  }

  function showBoard() {
    $("signin").hidden = true;
    $("board").hidden = false;
    $("signout").hidden = state.open;
    refresh();
    clearInterval(state.timer);
    state.timer = setInterval(refresh, REFRESH_MS);
  }

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    $("key").value = "";
    if (await signIn(key)) showBoard();
    else showSignIn("That is not the master key.");
  });
  $("signout").addEventListener("click", () => {
    state.key = "";
    sessionStorage.removeItem("llmgate-key");
    showSignIn();
  });
  $("window").addEventListener("change", refresh);
  $("filter-deployments").addEventListener("input", refresh);
  $("filter-keys").addEventListener("input", refresh);

  (async function start() {
    try {
      const health = await get("/health");
      state.open = "deployments" in health && !state.key; // open mode: no key needed
    } catch (error) {
      state.open = false;
    }
    if (state.open || (state.key && (await signIn(state.key)))) showBoard();
    else showSignIn();
  })();
})();
