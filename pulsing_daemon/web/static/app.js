// pulsing status page: live actor table, actions and drill-downs over the daemon's /v1 API.
//
// No framework, no build step, nothing loaded from another host (the CSP forbids it).
// Live updates come from GET /v1/events: every event makes the page re-read
// /v1/status once (debounced); a slow refresh (SLOW_REFRESH) keeps the outcome counters
// fresh, since a successful ask is not an event. Uptime and backoff tick locally.
//
// The token (when the daemon has one) lives in sessionStorage and goes out only as an
// Authorization header. Without a token the event stream is a plain EventSource; with
// one it is read with fetch() (EventSource cannot send headers), so the token never
// appears in a URL. Either way a dropped stream is reopened from the last event id.
"use strict";

(() => {
  const TOKEN_KEY = "pulsing.token";
  const SLOW_REFRESH = 15000; // ms between status reads when no event arrives
  const RECONNECT = [300, 1000, 2000, 4000, 5000]; // ms before each new attempt
  const MAX_RESULTS = 8;
  const MAX_LINES = 500;
  const OUTCOMES = ["ok", "business", "system", "timeout", "unsupported"];
  const ACTIONS = ["restart", "stop", "start"];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let lastEventId = null;
  let status = null;
  let statusAt = 0;
  let refreshTimer = null;
  let refreshing = false;
  let refreshAgain = false;
  let events = null; // {close()} of the current event stream
  let attempt = 0;
  let downSince = null;
  let reconnectNote = ""; // how the stream last came back, kept on the live line
  let drillActor = null;
  let logsAbort = null;
  let tailAbort = null;
  const rows = new Map(); // actor name -> {tr, parts}

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "\u2014";
    const s = Math.max(0, seconds);
    if (s < 60) return s.toFixed(1) + "s";
    const whole = Math.floor(s);
    const pad = (n) => String(n).padStart(2, "0");
    if (whole < 3600) return Math.floor(whole / 60) + "m" + pad(whole % 60) + "s";
    if (whole < 86400) return Math.floor(whole / 3600) + "h" + pad(Math.floor((whole % 3600) / 60)) + "m";
    return Math.floor(whole / 86400) + "d" + pad(Math.floor((whole % 86400) / 3600)) + "h";
  }

  function clock(date) {
    return (date || new Date()).toISOString().slice(11, 19) + " UTC";
  }

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(envelope, httpStatus) {
      super(envelope.message || "request failed");
      this.category = envelope.category || "runtime";
      this.httpStatus = httpStatus;
    }
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  // One request to the daemon. Resolves to the JSON body; rejects with ApiError
  // (category, message) for an error envelope or when the daemon is unreachable.
  async function api(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (_) {
      daemonDown();
      throw new ApiError({ category: "runtime", message: "the daemon is unreachable" }, 0);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const envelope = (data && data.error) || { message: "HTTP " + response.status };
      if (response.status === 401) askForToken(envelope);
      throw new ApiError(envelope, response.status);
    }
    return data;
  }

  // ------------------------------------------------------------------ token
  function askForToken(envelope) {
    const form = $("token-form");
    const hint = $("token-hint");
    hint.textContent = token
      ? "The daemon refused this token (" + (envelope.message || "unauthorized") + "). Enter it again."
      : "This daemon needs a token. It is kept in this tab only (sessionStorage) and sent as an Authorization header.";
    if (token) sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    stopEvents();
    if (form.hidden) {
      form.hidden = false;
      $("token-input").focus();
    }
    setText($("live"), "waiting for a token");
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token-input");
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-form").hidden = true;
    start();
  });

  // ------------------------------------------------------------------ status table
  function scheduleRefresh(delay) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, delay === undefined ? 120 : delay);
  }

  async function refresh() {
    clearTimeout(refreshTimer);
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    try {
      const payload = await api("GET", "/v1/status");
      status = payload;
      statusAt = performance.now();
      render();
    } catch (_) {
      // shown by the banner or the token form
    } finally {
      refreshing = false;
      if (!$("token-form").hidden) {
        // waiting for a token: nothing to read until one is entered
      } else if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh(0);
      } else {
        scheduleRefresh(SLOW_REFRESH);
      }
    }
  }

  function render() {
    const d = status.daemon;
    const daemon = $("daemon");
    if (!$("d-version")) {
      daemon.replaceChildren(
        el("span", {}, "version ", el("b", { id: "d-version" })),
        " ",
        el("span", {}, "pid ", el("b", { id: "d-pid" })),
        " ",
        el("span", {}, "uptime ", el("b", { id: "d-uptime" })),
        " ",
        el("span", {}, "config ", el("b", { id: "d-config" })),
        " ",
        el("span", { id: "d-health", role: "status" }),
      );
    }
    setText($("d-version"), d.version);
    setText($("d-pid"), String(d.pid));
    setText($("d-config"), d.config);
    const failed = status.actors.filter((a) => a.state === "failed").map((a) => a.name);
    const health = $("d-health");
    health.className = "health health-" + (failed.length ? "degraded" : "ok");
    setText(health, failed.length ? "degraded: " + failed.join(", ") + " failed" : "ok");

    const tbody = $("rows");
    if (!rows.size) tbody.replaceChildren(); // drop the server-rendered rows
    const seen = new Set();
    let index = 0;
    for (const actor of status.actors) {
      seen.add(actor.name);
      let row = rows.get(actor.name);
      if (!row) {
        row = makeRow(actor.name);
        rows.set(actor.name, row);
      }
      // The daemon's order. A row already in its place stays put: moving it would take
      // the keyboard focus from its buttons on every update.
      const here = tbody.children[index] || null;
      if (here !== row.tr) tbody.insertBefore(row.tr, here);
      index += 1;
      fillRow(row, actor);
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
    if (!status.actors.length) {
      tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "11", text: "no actors configured" })));
    }
    $("bulk").hidden = false;
    $("streams-section").hidden = false;
    tick();
  }

  function makeRow(name) {
    const parts = {};
    const td = (label, ...children) =>
      el("td", { "data-label": label, class: "col-" + label.toLowerCase().replace(" ", "-") }, ...children);
    parts.pick = el("input", { type: "checkbox", class: "pick", value: name, "aria-label": "select " + name });
    parts.name = el("button", {
      type: "button",
      class: "linkish name",
      "aria-label": "details of " + name,
      text: name,
      onclick: () => openDrill(name),
    });
    parts.state = el("span", { class: "state" });
    parts.restarts = el("span");
    parts.opRestarts = el("span", { class: "op-restarts" });
    parts.backoff = el("span");
    parts.mailbox = el("span");
    parts.inFlight = el("span");
    parts.outcomes = el("span");
    parts.error = el("span", { class: "error" });
    parts.tb = el("details", { class: "tb", hidden: true }, el("summary", { text: "traceback of the last failure" }), el("pre"));
    parts.uptime = el("span");
    parts.buttons = {};
    const actions = el("div", { class: "actions" });
    for (const action of ACTIONS) {
      const button = el("button", {
        type: "button",
        class: action === "stop" ? "danger" : null,
        "data-action": action,
        "aria-label": action + " " + name,
        text: action[0].toUpperCase() + action.slice(1),
        onclick: () => act([name], action),
      });
      parts.buttons[action] = button;
      actions.append(button);
    }
    const tr = el(
      "tr",
      { "data-actor": name },
      td("Select", parts.pick),
      td("Actor", parts.name),
      td("State", parts.state),
      td("Restarts", parts.restarts, " ", parts.opRestarts),
      td("Backoff", parts.backoff),
      td("Mailbox", parts.mailbox),
      td("In flight", parts.inFlight),
      td("Outcomes", parts.outcomes),
      td("Last error", parts.error, parts.tb),
      td("Uptime", parts.uptime),
      td("Actions", actions),
    );
    return { tr, parts, actor: null };
  }

  function fillRow(row, actor) {
    const p = row.parts;
    row.actor = actor;
    p.state.className = "state state-" + actor.state;
    setText(p.state, actor.state);
    setText(p.restarts, actor.restarts + "/" + actor.max_restarts);
    setText(p.opRestarts, "(operator " + (actor.operator_restarts || 0) + ")");
    setText(p.mailbox, String(actor.mailbox));
    setText(p.inFlight, String(actor.in_flight));
    const counts = actor.counts || {};
    setText(p.outcomes, OUTCOMES.map((k) => k + " " + (counts[k] || 0)).join(" "));
    const error = actor.last_error;
    const key = error ? [error.category, error.type, error.message, error.at].join("\u0000") : "";
    if (p.error.dataset.key !== key) {
      p.error.dataset.key = key;
      if (error) {
        p.error.replaceChildren(
          el("span", { class: "cat cat-" + error.category, text: error.category }),
          " ",
          el("span", { class: "etype", text: error.type || "" }),
          ": " + (error.message || "") + " ",
          el("time", { datetime: error.at || "", text: error.at || "" }),
        );
      } else {
        p.error.textContent = "\u2014";
      }
    }
    const traceback = actor.last_failure && actor.last_failure.traceback;
    p.tb.hidden = !traceback;
    if (traceback) setText(p.tb.querySelector("pre"), traceback);
    p.buttons.start.disabled = actor.state === "running" || actor.state === "starting";
    p.buttons.stop.disabled = actor.state === "stopped";
  }

  // Uptime and backoff count on between status reads (no request).
  function tick() {
    if (!status) return;
    const elapsed = (performance.now() - statusAt) / 1000;
    setText($("d-uptime"), duration(status.daemon.uptime + (downSince ? 0 : elapsed)));
    for (const row of rows.values()) {
      const a = row.actor;
      if (!a) continue;
      const backoff = a.backoff_remaining;
      setText(row.parts.backoff, backoff === null || backoff === undefined ? "\u2014" : duration(Math.max(0, backoff - elapsed)));
      setText(row.parts.uptime, a.uptime === null || a.uptime === undefined ? "\u2014" : duration(a.uptime + elapsed));
    }
  }
  setInterval(tick, 1000);

  // ------------------------------------------------------------------ events (live)
  function onEvent(event) {
    if (typeof event.id === "number") lastEventId = event.id;
    setText($("live"), "live" + reconnectNote + " \u00b7 last event #" + lastEventId + " at " + clock());
    if (event.kind === "daemon" && event.event === "stopping") {
      showBanner("The daemon is stopping (" + clock() + ").");
    }
    if (drillActor && event.actor === drillActor) addActorEvent(event);
    scheduleRefresh();
  }

  function onOpen() {
    const wasDown = downSince !== null;
    attempt = 0;
    downSince = null;
    hideBanner();
    if (wasDown) {
      reconnectNote = " \u00b7 reconnected at " + clock() +
        (lastEventId !== null ? ", resumed after event #" + lastEventId : "");
    }
    setText($("live"), "live" + reconnectNote);
    scheduleRefresh(0);
    if (wasDown && drillActor) openLogs(drillActor);
  }

  function onDrop(opened) {
    stopEvents();
    if (!opened) daemonDown(); // a stream that worked and ended is retried once quietly first
    const delay = RECONNECT[Math.min(attempt, RECONNECT.length - 1)];
    attempt += 1;
    setTimeout(connectEvents, delay);
  }

  function daemonDown() {
    if (downSince === null) downSince = new Date();
    showBanner("The daemon is not answering (since " + clock(downSince) + "). Reconnecting by itself\u2026");
    setText($("live"), "daemon unreachable");
  }

  function showBanner(text) {
    const banner = $("banner");
    setText(banner, text);
    banner.hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
  }

  function stopEvents() {
    if (events) {
      const current = events;
      events = null;
      current.close();
    }
  }

  function eventsQuery() {
    // First connection: the newest event only (to learn the id); later: after the last.
    return lastEventId === null ? "?limit=1" : "?since=" + lastEventId;
  }

  function connectEvents() {
    if (events) return;
    if (token) connectWithFetch();
    else connectWithEventSource();
  }

  function connectWithEventSource() {
    const source = new EventSource("/v1/events" + eventsQuery());
    let opened = false;
    const handle = {
      close: () => source.close(),
    };
    events = handle;
    source.onopen = () => {
      opened = true;
      onOpen();
    };
    source.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch (_) {
        // a frame that is not JSON: ignore it
      }
    };
    source.onerror = () => {
      if (events !== handle) return;
      // A 401 arrives here too (EventSource hides the status): ask /v1/status, which says.
      if (!opened) api("GET", "/v1/status").catch(() => {});
      onDrop(opened);
    };
  }

  // SSE over fetch(): the same frames, with the Authorization header.
  function connectWithFetch() {
    const abort = new AbortController();
    const handle = { close: () => abort.abort() };
    events = handle;
    let opened = false;
    const h = headers({ Accept: "text/event-stream" });
    if (lastEventId !== null) h["Last-Event-ID"] = String(lastEventId);
    const query = lastEventId === null ? "?limit=1" : "";
    (async () => {
      const response = await fetch("/v1/events" + query, {
        headers: h,
        cache: "no-store",
        credentials: "omit",
        signal: abort.signal,
      });
      if (response.status === 401) {
        const data = await response.json().catch(() => ({}));
        askForToken((data && data.error) || {});
        return "unauthorized";
      }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      opened = true;
      onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split("\n")
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).replace(/^ /, ""))
            .join("\n");
          if (data) {
            try {
              onEvent(JSON.parse(data));
            } catch (_) {
              // not JSON: ignore
            }
          }
        }
      }
      return "ended";
    })().then(
      (how) => {
        if (how !== "unauthorized" && events === handle) onDrop(opened);
      },
      () => {
        if (events === handle) onDrop(opened);
      },
    );
  }

  // ------------------------------------------------------------------ actions
  function selected() {
    return [...rows.values()].filter((row) => row.parts.pick.checked).map((row) => row.parts.pick.value);
  }

  async function act(names, action) {
    if (!names.length) {
      addResult(action + ": select at least one actor first", true);
      return;
    }
    if (action === "stop") {
      const what = names.length === 1 ? names[0] : names.length + " actors (" + names.join(", ") + ")";
      if (!window.confirm("Stop " + what + "? A stopped actor is not restarted until someone starts it.")) {
        addResult("stop " + names.join(", ") + ": cancelled", false);
        return;
      }
    }
    await Promise.all(names.map((name) => actOne(name, action)));
    scheduleRefresh(0);
  }

  async function actOne(name, action) {
    const row = rows.get(name);
    if (row) row.parts.buttons[action].disabled = true;
    try {
      const data = await api("POST", "/v1/actors/" + encodeURIComponent(name) + "/" + action);
      const result = data.action || {};
      const actor = (data.actors || [])[0] || {};
      if (result.after === "failed") {
        const error = actor.last_error || {};
        addResult(
          action + " " + name + ": failed \u2014 " + (error.category || "system") + ": " +
            (error.type ? error.type + ": " : "") + (error.message || "the actor did not start"),
          true,
        );
      } else {
        addResult(action + " " + name + ": " + result.before + " \u2192 " + result.after, false);
      }
    } catch (error) {
      addResult(action + " " + name + ": failed \u2014 " + error.category + ": " + error.message, true);
    } finally {
      if (row) row.parts.buttons[action].disabled = false;
    }
  }

  function addResult(text, failed) {
    const list = $("results");
    list.prepend(el("li", { class: failed ? "fail" : "ok" }, el("time", { text: clock() }), " " + text));
    while (list.children.length > MAX_RESULTS) list.lastElementChild.remove();
  }

  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => act(selected(), button.dataset.bulk));
  }
  $("pick-all").addEventListener("change", (event) => {
    for (const row of rows.values()) row.parts.pick.checked = event.target.checked;
  });

  // ------------------------------------------------------------------ drill-down
  function openDrill(name) {
    drillActor = name;
    const section = $("drill");
    section.hidden = false;
    const title = $("drill-title");
    setText(title, "Actor " + name);
    title.setAttribute("tabindex", "-1");
    title.focus();
    $("actor-events").replaceChildren();
    loadActorEvents(name);
    openLogs(name);
  }

  function closeDrill() {
    const name = drillActor;
    drillActor = null;
    if (logsAbort) logsAbort.abort();
    $("drill").hidden = true;
    const row = name && rows.get(name);
    if (row) row.parts.name.focus();
  }

  $("drill-close").addEventListener("click", closeDrill);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && drillActor) closeDrill();
  });

  function describeEvent(event) {
    const skip = new Set(["id", "at", "actor", "kind"]);
    const fields = Object.entries(event)
      .filter(([key]) => !skip.has(key))
      .map(([key, value]) => key + "=" + (typeof value === "string" ? value : JSON.stringify(value)));
    return event.at + " #" + event.id + " " + event.kind + " " + fields.join(" ");
  }

  function addActorEvent(event) {
    const list = $("actor-events");
    list.append(el("li", { text: describeEvent(event) }));
    while (list.children.length > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  async function loadActorEvents(name) {
    const list = $("actor-events");
    try {
      const text = await readText("/v1/events?follow=0&limit=50&actor=" + encodeURIComponent(name));
      if (drillActor !== name) return;
      for (const line of text.split("\n")) {
        if (line.trim()) addActorEvent(JSON.parse(line));
      }
      if (!list.children.length) list.append(el("li", { text: "no events kept for " + name }));
    } catch (error) {
      list.append(el("li", { text: "cannot read events: " + error.category + ": " + error.message }));
    }
  }

  async function readText(path) {
    let response;
    try {
      response = await fetch(path, {
        headers: headers({ Accept: "application/x-ndjson" }),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (_) {
      throw new ApiError({ category: "runtime", message: "the daemon is unreachable" }, 0);
    }
    if (!response.ok) throw await envelopeOf(response);
    return response.text();
  }

  async function envelopeOf(response) {
    const data = await response.json().catch(() => null);
    return new ApiError((data && data.error) || { message: "HTTP " + response.status }, response.status);
  }

  // Read NDJSON records as they arrive; calls onRecord(object) for each line.
  async function followNdjson(path, signal, onRecord) {
    const response = await fetch(path, {
      headers: headers({ Accept: "application/x-ndjson" }),
      cache: "no-store",
      credentials: "omit",
      signal,
    });
    if (!response.ok) throw await envelopeOf(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).trim();
        buffer = buffer.slice(end + 1);
        if (line) {
          try {
            onRecord(JSON.parse(line));
          } catch (_) {
            // not JSON: ignore
          }
        }
      }
    }
  }

  function appendLine(pre, text) {
    pre.append(text + "\n");
    while (pre.childNodes.length > MAX_LINES) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  }

  function openLogs(name) {
    if (logsAbort) logsAbort.abort();
    const abort = new AbortController();
    logsAbort = abort;
    const pre = $("logs");
    pre.replaceChildren();
    setText($("logs-state"), "(following)");
    followNdjson("/v1/actors/" + encodeURIComponent(name) + "/logs?lines=100&follow=1", abort.signal, (record) => {
      const text = record.text === undefined ? JSON.stringify(record) : record.text;
      appendLine(pre, (record.at || "") + " " + (record.stream || "") + " " + text);
    }).then(
      () => {
        if (logsAbort === abort) setText($("logs-state"), "(ended)");
      },
      (error) => {
        if (abort.signal.aborted) return;
        setText($("logs-state"), "");
        if (error instanceof ApiError && error.httpStatus === 404 && /no such route/.test(error.message)) {
          appendLine(pre, "This daemon does not serve log lines (GET /v1/actors/" + name + "/logs: " + error.message + ").");
        } else if (error instanceof ApiError) {
          appendLine(pre, "cannot read log lines: " + error.category + ": " + error.message);
        } else {
          appendLine(pre, "log stream interrupted; it is reopened when the daemon answers again");
        }
      },
    );
  }

  // ------------------------------------------------------------------ streams
  async function loadStreams() {
    const tbody = $("streams");
    let data;
    try {
      data = await api("GET", "/v1/streams");
    } catch (error) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: "8", text: "cannot list streams: " + error.category + ": " + error.message })));
      return;
    }
    const list = data.streams || [];
    if (!list.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: "8", text: "no streams in the journal" })));
      return;
    }
    tbody.replaceChildren(
      ...list.map((s) =>
        el(
          "tr",
          { "data-stream": s.id },
          el("td", {}, el("code", { text: s.id })),
          el("td", { text: s.actor || "" }),
          el("td", { text: s.op || "" }),
          el("td", { text: s.key || "\u2014" }),
          el("td", { text: s.state || "" }),
          el("td", { text: s.last_seq === null || s.last_seq === undefined ? "\u2014" : String(s.last_seq) }),
          el("td", { text: s.started || s.started_at || "" }),
          el("td", {}, el("button", { type: "button", "aria-label": "open stream " + s.id, text: "Open", onclick: () => openTail(s) })),
        ),
      ),
    );
  }

  let tailStream = null;
  function openTail(stream) {
    tailStream = stream;
    const form = $("tail-form");
    form.hidden = false;
    setText($("tail-title"), "Stream " + stream.id + " (" + stream.actor + "." + stream.op + ")");
    $("tail").replaceChildren();
    $("tail-from").focus();
  }

  $("tail-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!tailStream) return;
    if (tailAbort) tailAbort.abort();
    const abort = new AbortController();
    tailAbort = abort;
    const pre = $("tail");
    pre.replaceChildren();
    const from = Math.max(0, parseInt($("tail-from").value, 10) || 0);
    followNdjson("/v1/streams/" + encodeURIComponent(tailStream.id) + "?from=" + from, abort.signal, (record) => {
      if (record.seq !== undefined) appendLine(pre, record.seq + " " + JSON.stringify(record.data));
      else if (record.error) appendLine(pre, "\u2014 ended with an error: " + record.error.category + ": " + record.error.message);
      else appendLine(pre, "\u2014 end of stream");
    }).catch((error) => {
      if (abort.signal.aborted) return;
      appendLine(pre, "cannot tail: " + (error.category || "runtime") + ": " + (error.message || "interrupted"));
    });
  });
  $("tail-stop").addEventListener("click", () => {
    if (tailAbort) tailAbort.abort();
    appendLine($("tail"), "\u2014 stopped");
  });
  $("streams-refresh").addEventListener("click", loadStreams);

  // ------------------------------------------------------------------ start
  async function start() {
    try {
      await refresh();
    } finally {
      if (status !== null || downSince !== null) {
        connectEvents();
        loadStreams();
      }
    }
  }

  start();
})();
