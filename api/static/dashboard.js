// The operators' dashboard: accounts, their next runs and why they wait, and a 24-hour
// timeline. Reads the REST API, refreshes on server-sent events, and polls as a fallback.
"use strict";

(() => {
  const API = "api/v1"; // relative, like the page's own assets
  const TOKEN_KEY = "taskdispatch.token";
  const HORIZON_MS = 24 * 3600 * 1000;
  const POLL_LIVE_MS = 60_000; // events keep the page current; this only heals gaps
  const POLL_OFFLINE_MS = 10_000;
  const EVENT_DEBOUNCE_MS = 250; // a burst of events (a beat tick) costs one refresh
  const DETAIL_CONCURRENCY = 6;
  // Tasks with more runs than this in 24 h are drawn as a band, not one mark per run.
  const MAX_MARKS = 100;
  const EVENT_TYPES = [
    "task.created", "task.updated", "task.deleted",
    "round.started", "round.finished", "round.failed", "round.skipped", "round.lost",
    "round.waiting", "limit.saved", "limit.deleted",
    "dispatcher.started", "dispatcher.stopped", "resync",
  ];

  const STATUS_TEXT = {
    pending: "待执行", running: "运行中", paused: "已暂停", completed: "已完成", error: "出错",
  };
  const OUTCOME_TEXT = { ok: "成功", failed: "失败", skipped: "跳过", lost: "丢失" };

  const $ = (id) => document.getElementById(id);

  // task_id -> task, in the API's (creation) order; details are refetched only when a
  // task's signature changes, so a refresh costs one list call in the steady state.
  let tasks = new Map();
  const details = new Map(); // task_id -> {signature, lastRun, upcoming}
  let dispatcherStatus = null;
  let stream = null; // the live event connection: {controller, live}
  let lastEventId = null; // where a new connection resumes, so that nothing is missed
  let refreshing = null;
  let refreshAgain = false;
  let pollTimer = null;
  let eventTimer = null;

  // ---------------------------------------------------------------- API

  class Unauthorized extends Error {}

  async function api(path, { method = "GET", body } = {}) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${API}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) throw new Unauthorized();
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
    return payload;
  }

  async function listAllTasks() {
    const all = [];
    for (;;) {
      const page = await api(`/tasks/?limit=1000&offset=${all.length}`);
      all.push(...page.tasks);
      if (page.tasks.length === 0 || all.length >= page.total) return all;
    }
  }

  const taskPath = (task) => `/tasks/${encodeURIComponent(task.task_id)}`;

  function signature(task) {
    return [task.status, task.next_execution_time, task.round_num, task.updated_at,
      task.interval, task.windows.join(","), task.jitter_s].join("|");
  }

  const isDense = (task) => HORIZON_MS / (task.interval * 1000) > MAX_MARKS;

  async function loadDetails(task) {
    // Enough slots to cover the timeline from the next run on; a dense task needs only its
    // first run (the band starts there).
    const count = isDense(task) ? 1 : Math.min(MAX_MARKS, Math.ceil(HORIZON_MS / (task.interval * 1000)) + 1);
    try {
      const [runs, upcoming] = await Promise.all([
        api(`${taskPath(task)}/runs?limit=1`),
        api(`${taskPath(task)}/upcoming?count=${count}`),
      ]);
      details.set(task.task_id, {
        signature: signature(task),
        lastRun: runs.runs[0] || null,
        // The real starts (slot plus jitter), and the windows the server computed from the
        // task's calendar (windows, weekdays, blackout dates) for the next 24 hours.
        upcoming: upcoming.upcoming.map((iso) => Date.parse(iso)),
        windows: upcoming.windows_24h.map((w) => [Date.parse(w.start), Date.parse(w.end)]),
      });
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
      // Deleted meanwhile: the next refresh drops it from the list.
    }
  }

  async function eachLimited(items, limit, fn) {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  }

  // ---------------------------------------------------------------- refresh

  function refresh() {
    // Nothing to load while the token form waits for the operator.
    if (!$("login").hidden) return Promise.resolve(false);
    // One refresh at a time; a request during one runs once more when it ends.
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const [status, list] = await Promise.all([api("/dispatcher/status"), listAllTasks()]);
        dispatcherStatus = status;
        tasks = new Map(list.map((task) => [task.task_id, task]));
        for (const id of details.keys()) if (!tasks.has(id)) details.delete(id);
        const stale = list.filter((task) => details.get(task.task_id)?.signature !== signature(task));
        await eachLimited(stale, DETAIL_CONCURRENCY, loadDetails);
        showBanner(null);
        $("loading").hidden = true;
        $("content").hidden = false;
        render();
        return true;
      } catch (error) {
        if (error instanceof Unauthorized) {
          askForToken();
        } else {
          showBanner(`无法读取数据：${error.message}`);
        }
        return false;
      } finally {
        refreshing = null;
        if (refreshAgain) {
          refreshAgain = false;
          refresh();
        }
      }
    })();
    return refreshing;
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    const live = Boolean(stream && stream.live);
    pollTimer = setTimeout(async () => {
      await refresh();
      schedulePoll();
    }, live ? POLL_LIVE_MS : POLL_OFFLINE_MS);
  }

  // ---------------------------------------------------------------- live events

  // The stream is read with fetch, not EventSource: fetch sends the token in the
  // Authorization header (EventSource can only put it in the URL, where access and proxy
  // logs keep it). A new connection resumes after the last id seen (Last-Event-ID).
  function connectEvents() {
    if (stream) stream.controller.abort();
    const current = (stream = { controller: new AbortController(), live: false });
    readEvents(current).catch(() => {}).finally(() => {
      if (stream !== current) return; // replaced by a newer connection
      current.live = false;
      setLive(false);
      setTimeout(() => { if (stream === current) connectEvents(); }, POLL_OFFLINE_MS);
    });
  }

  async function readEvents(current) {
    const headers = { Accept: "text/event-stream" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(`${API}/events`, { headers, signal: current.controller.signal });
    if (!response.ok || !response.body) return;
    current.live = true;
    setLive(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        onFrame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function onFrame(frame) {
    let type = "message";
    let id = null;
    for (const line of frame.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim();
      else if (line.startsWith("id:")) id = line.slice(3).trim();
    }
    if (id) lastEventId = id;
    if (!EVENT_TYPES.includes(type)) return; // keep-alive comments and unknown types
    clearTimeout(eventTimer);
    eventTimer = setTimeout(refresh, EVENT_DEBOUNCE_MS);
  }

  function setLive(live) {
    const badge = $("live");
    badge.textContent = live ? "实时" : "轮询";
    badge.classList.toggle("on", live);
    badge.title = live ? "通过 /api/v1/events 实时更新" : "实时事件未连接，每 10 秒刷新";
    schedulePoll();
  }

  // ---------------------------------------------------------------- token

  function askForToken() {
    const form = $("login");
    if (!form.hidden) return;
    $("login-error").hidden = !sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    form.hidden = false;
    $("loading").hidden = true;
    $("content").hidden = true;
    if (stream) {
      stream.controller.abort();
      stream = null;
    }
    $("token-input").focus();
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("login").hidden = true;
    $("loading").hidden = false;
    connectEvents();
    await refresh();
  });

  // ---------------------------------------------------------------- formatting

  const pad = (n) => String(n).padStart(2, "0");

  function formatTime(ms) {
    const date = new Date(ms);
    const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    const today = new Date();
    if (date.toDateString() === today.toDateString()) return time;
    return `${date.getMonth() + 1}/${date.getDate()} ${time}`;
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const days = Math.floor(s / 86400);
    if (days > 0) return `${days}天${Math.floor((s % 86400) / 3600)}小时`;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
  }

  function reasonText(reason) {
    if (!reason) return "按计划执行";
    switch (reason.code) {
      case "paused":
        return "已暂停" + (reason.until ? `，${formatTime(Date.parse(reason.until))} 自动恢复` : "")
          + (reason.note ? `：${reason.note}` : "");
      case "dispatcher_stopped": return "调度器已停止";
      case "outside_window":
        return `不在允许时段，${formatTime(Date.parse(reason.window_opens))} 开始`;
      case "account_locked": return "账户正被另一轮次占用";
      case "no_worker_for_queue": return `队列 ${reason.queue} 没有在线 worker`;
      case "error": return `连续失败后停止：${reason.last_error || "未知错误"}`;
      case "completed": return "已过结束时间";
      case "backlog": return `已到期 ${formatDuration(reason.waiting_s)}，等待派发`;
      case "limit_full":
        return `等待限流 ${reason.limit}（${reason.in_use}/${reason.capacity ?? "—"} 已占用）`;
      case "rate_limited":
        return `限流 ${reason.limit} 的启动次数已满`
          + (reason.next_start ? `，${formatTime(Date.parse(reason.next_start))} 可再启动` : "");
      default: return reason.code;
    }
  }

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    // Text only (never innerHTML): names and errors come from users.
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function showBanner(message) {
    $("banner").hidden = !message;
    $("banner").textContent = message || "";
  }

  let noticeTimer = null;

  // An action's failure stays visible for a while, whatever refreshes happen meanwhile.
  function showNotice(message) {
    $("notice").hidden = false;
    $("notice").textContent = message;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { $("notice").hidden = true; }, 8000);
  }

  // ---------------------------------------------------------------- rendering

  function render() {
    renderDispatcher();
    renderLimits();
    renderTable();
    renderTimeline();
    tick();
  }

  function renderDispatcher() {
    const s = dispatcherStatus;
    const state = $("dispatcher-state");
    state.textContent = s.is_running ? "调度中" : s.enabled ? "无存活 beat" : "调度器已停止";
    state.dataset.status = s.is_running ? "running" : s.enabled ? "error" : "paused";
    $("dispatcher-facts").textContent =
      `beat ${s.beats_alive} · worker ${s.workers_alive} · 积压 ${s.due_backlog}`;
    const toggle = $("dispatcher-toggle");
    toggle.hidden = false;
    toggle.textContent = s.enabled ? "停止调度器" : "启动调度器";
    toggle.dataset.action = s.enabled ? "stop" : "start";
    $("summary").textContent = ["pending", "running", "paused", "error", "completed"]
      .map((status) => `${STATUS_TEXT[status]} ${s[`${status}_tasks`]}`)
      .join(" · ");
  }

  function matchText(match) {
    const parts = [];
    if (match.tag) parts.push(`标签 ${match.tag}`);
    if (match.sys_type) parts.push(`sys_type ${match.sys_type}`);
    if (match.task_type) parts.push(`task_type ${match.task_type}`);
    return parts.length ? parts.join(" 且 ") : "所有任务";
  }

  function renderLimits() {
    const limits = dispatcherStatus.limits || [];
    $("limits-section").hidden = limits.length === 0;
    const rows = limits.map((limit) => {
      const full = limit.max_concurrent !== null && limit.in_use >= limit.max_concurrent;
      const rate = limit.max_starts === null ? "—"
        : `${limit.starts_in_window}/${limit.max_starts} 每 ${limit.per_s} 秒`
          + (limit.next_start ? `，${formatTime(Date.parse(limit.next_start))} 可再启动` : "");
      return el("tr", { "data-limit": limit.name },
        el("td", { class: "name" }, limit.name),
        el("td", {}, matchText(limit.match)),
        el("td", { class: "num", "data-full": full ? "1" : "" },
          limit.max_concurrent === null ? "—" : `${limit.in_use}/${limit.max_concurrent}`),
        el("td", {}, rate),
        el("td", { class: "num" }, String(limit.waiting)));
    });
    $("limits").tBodies[0].replaceChildren(...rows);
  }

  function nextCell(task) {
    if (task.status === "running" && task.started_at) {
      return el("span", {}, "已运行 ",
        el("span", { class: "countdown", "data-since": Date.parse(task.started_at) }));
    }
    if (task.status === "paused" && task.paused_until) {
      return `${formatTime(Date.parse(task.paused_until))} 恢复`;
    }
    if (task.status !== "pending" || !task.next_execution_time) return el("span", { class: "muted" }, "—");
    const at = Date.parse(task.next_execution_time);
    return el("span", {}, formatTime(at), " ",
      el("span", { class: "countdown", "data-until": at }));
  }

  function lastRunCell(task) {
    const run = details.get(task.task_id)?.lastRun;
    if (!run) return el("span", { class: "muted" }, "—");
    const when = run.finished_at || run.started_at || run.scheduled_for;
    return el("span", { title: run.error || run.reason || "" },
      el("span", { class: "badge", "data-outcome": run.outcome }, OUTCOME_TEXT[run.outcome] || run.outcome),
      when ? ` ${formatTime(Date.parse(when))}` : "");
  }

  function actionButtons(task) {
    const buttons = [];
    const button = (action, label) =>
      el("button", { type: "button", "data-action": action, "data-task-id": task.task_id }, label);
    if (task.status === "pending" || task.status === "running") buttons.push(button("pause", "暂停"));
    if (task.status === "paused" || task.status === "error") buttons.push(button("resume", "恢复"));
    if (task.status === "pending") buttons.push(button("run", "立即执行"));
    return el("div", { class: "actions" }, ...buttons);
  }

  // Rows whose data did not change are kept as they are: a refresh must not swap the
  // button under an operator's pointer (the click would be lost) for an identical one.
  const renderedRows = new Map(); // task_id -> {key, row}

  function renderTable() {
    const rows = [...tasks.values()].map((task) => {
      const key = JSON.stringify([task, details.get(task.task_id)?.lastRun]);
      const known = renderedRows.get(task.task_id);
      if (known?.key === key) return known.row;
      const row = tableRow(task);
      renderedRows.set(task.task_id, { key, row });
      return row;
    });
    for (const id of renderedRows.keys()) if (!tasks.has(id)) renderedRows.delete(id);
    $("accounts").tBodies[0].replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
  }

  function tableRow(task) {
    return el("tr", { "data-task-id": task.task_id, "data-account": task.account_id },
      el("td", {},
        el("div", { class: "name" }, task.account_name),
        el("div", { class: "muted small" }, task.account_id),
        task.tags.length ? el("div", { class: "tags small" }, task.tags.join(" · ")) : null),
      el("td", {},
        el("span", { class: "badge status", "data-status": task.status },
          STATUS_TEXT[task.status] || task.status)),
      el("td", { class: "num" }, String(task.round_num)),
      el("td", {}, lastRunCell(task)),
      el("td", {}, nextCell(task)),
      el("td", { class: "reason", "data-code": task.waiting_reason?.code || "" },
        reasonText(task.waiting_reason)),
      el("td", {}, actionButtons(task)));
  }

  // ---- timeline

  const percent = (ms, from) => `${((ms - from) / HORIZON_MS) * 100}%`;

  function axis(from) {
    const ticks = [el("span", { class: "tick now" }, "现在")];
    const first = new Date(from);
    first.setMinutes(0, 0, 0);
    for (let t = first.getTime() + 3600_000; t < from + HORIZON_MS; t += 3600_000) {
      const date = new Date(t);
      if (date.getHours() % 3 !== 0 || t - from < 1800_000) continue;
      const label = date.getHours() === 0 ? `${date.getMonth() + 1}/${date.getDate()}` : `${pad(date.getHours())}:00`;
      const tick = el("span", { class: "tick" }, label);
      tick.style.left = percent(t, from);
      ticks.push(tick);
    }
    return el("div", { class: "tl-row tl-axis" }, el("div", { class: "tl-label" }),
      el("div", { class: "tl-track" }, ...ticks));
  }

  // From the first run on, a dense task runs every `interval` inside each window span: one
  // band per span instead of thousands of marks (the API's first upcoming run already
  // accounts for a pause, a stop or the end; an end later today is not drawn).
  function denseBands(task, first, spans, from, to) {
    if (first === undefined) return [];
    const end = to;
    const pace = task.interval < 60 ? `每 ${task.interval} 秒` : `每 ${Math.round(task.interval / 60)} 分钟`;
    return spans
      .map(([start, stop]) => [Math.max(start, first), Math.min(stop, end)])
      .filter(([start, stop]) => stop > start)
      .map(([start, stop]) => {
        const runs = Math.floor((stop - start) / (task.interval * 1000)) + 1;
        const band = el("span", {
          class: "tl-dense",
          title: `${formatTime(start)}–${formatTime(stop)}，${pace}一次，约 ${runs} 次`,
        });
        band.style.left = percent(start, from);
        band.style.width = `${((stop - start) / HORIZON_MS) * 100}%`;
        return band;
      });
  }

  function renderTimeline() {
    const from = Date.now();
    const to = from + HORIZON_MS;
    const rows = [...tasks.values()].map((task) => {
      const track = el("div", { class: "tl-track" });
      const windows = (details.get(task.task_id)?.windows || [])
        .map(([start, end]) => [Math.max(start, from), Math.min(end, to)])
        .filter(([start, end]) => end > start);
      for (const [start, end] of windows) {
        const span = el("span", { class: "tl-window" });
        span.style.left = percent(start, from);
        span.style.width = `${((end - start) / HORIZON_MS) * 100}%`;
        track.append(span);
      }
      const runs = details.get(task.task_id)?.upcoming || [];
      if (isDense(task)) {
        for (const band of denseBands(task, runs[0], windows, from, to)) track.append(band);
      } else {
        for (const at of runs.filter((t) => t >= from && t < to)) {
          const mark = el("span", { class: "tl-run", title: formatTime(at) });
          mark.style.left = percent(at, from);
          track.append(mark);
        }
      }
      return el("div", { class: "tl-row", "data-status": task.status },
        el("div", { class: "tl-label", title: task.account_id }, task.account_name), track);
    });
    $("timeline").replaceChildren(axis(from), ...rows);
  }

  // Live countdowns, without re-rendering the table.
  function tick() {
    const now = Date.now();
    for (const node of document.querySelectorAll(".countdown[data-until]")) {
      const left = (Number(node.dataset.until) - now) / 1000;
      node.textContent = left >= 0 ? `还有 ${formatDuration(left)}` : `已到期 ${formatDuration(-left)}`;
      node.classList.toggle("late", left < 0);
    }
    for (const node of document.querySelectorAll(".countdown[data-since]")) {
      node.textContent = formatDuration((now - Number(node.dataset.since)) / 1000);
    }
  }

  // ---------------------------------------------------------------- actions

  const ACTIONS = {
    pause: (id) => api(`/tasks/${encodeURIComponent(id)}/pause`, { method: "POST" }),
    resume: (id) => api(`/tasks/${encodeURIComponent(id)}/resume`, { method: "POST" }),
    run: (id) => api(`/tasks/${encodeURIComponent(id)}/run`, { method: "POST" }),
  };

  $("accounts").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    try {
      await ACTIONS[button.dataset.action](button.dataset.taskId);
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else showNotice(`操作失败：${error.message}`);
    } finally {
      button.disabled = false; // a refused action leaves the row, and so this button, as it was
    }
    await refresh(); // not waiting for the event: the click should show at once
  });

  $("dispatcher-toggle").addEventListener("click", async (event) => {
    const action = event.target.dataset.action;
    if (action === "stop" && !window.confirm("停止调度器？正在执行的轮次会完成，但不再派发新的轮次。")) return;
    try {
      await api(`/dispatcher/${action}`, { method: "POST" });
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else showNotice(`操作失败：${error.message}`);
    }
    await refresh();
  });

  // ---------------------------------------------------------------- start

  setInterval(tick, 1000);
  // The timeline's left edge is "now": move it along once a minute.
  setInterval(() => { if (tasks.size) renderTimeline(); }, 60_000);
  // The stream first: whatever changes while the first page loads arrives as an event
  // and triggers one more refresh, instead of being missed.
  connectEvents();
  refresh().then(() => schedulePoll());
})();
