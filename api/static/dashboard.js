// The operators' dashboard for a fleet: one page of accounts at a time (paged, filtered and
// sorted by the server), their latest and upcoming runs, bulk actions over a selection or
// over everything the filters match, create and edit forms, each task's audit trail, and a
// 24-hour timeline. Reads the REST API, refreshes what is shown on server-sent events, and
// polls as a fallback. What a user may do follows the role of their token (GET /me).
"use strict";

(() => {
  const API = "api/v1"; // relative, like the page's own assets
  const TOKEN_KEY = "taskdispatch.token";
  const HORIZON_MS = 24 * 3600 * 1000;
  const POLL_LIVE_MS = 60_000; // events keep the page current; this only heals gaps
  const POLL_OFFLINE_MS = 10_000;
  // An event about a row on the page refreshes it soon; one about another task can only
  // change the counts or bring a row onto the page, so a burst of those (a busy fleet starts
  // rounds every second) costs at most one page read per few seconds.
  const VISIBLE_EVENT_MS = 250;
  const OTHER_EVENT_MS = 3000;
  const TYPING_MS = 300; // filters typed into are applied once the typing pauses
  // Tasks with more runs than this in 24 h are drawn as a band, not one mark per run.
  const MAX_MARKS = 100;
  const PAGE_SIZES = [20, 50, 100, 200];
  const MAX_FAILURES_SHOWN = 50;
  const AUDIT_LIMIT = 100;
  const EVENT_TYPES = [
    "task.created", "task.updated", "task.deleted",
    "round.started", "round.finished", "round.failed", "round.skipped", "round.lost", "round.cancelled",
    "round.waiting", "round.progress", "limit.saved", "limit.deleted",
    "dispatcher.started", "dispatcher.stopped", "resync",
  ];

  const STATUS_TEXT = {
    pending: "待执行", running: "运行中", paused: "已暂停", completed: "已完成", error: "出错",
  };
  const OUTCOME_TEXT = { ok: "成功", failed: "失败", skipped: "跳过", lost: "丢失", cancelled: "已停止" };
  const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
  const ROLE_TEXT = { viewer: "只读", operator: "操作员", admin: "管理员" };
  const BULK_TEXT = { pause: "暂停", resume: "恢复", run: "立即执行", cancel: "停止本轮", delete: "删除" };
  const AUDIT_TEXT = {
    create: "创建", patch: "修改", pause: "暂停", resume: "恢复", reorder: "调整优先级",
    run: "立即执行", cancel: "停止本轮", delete: "删除", import: "导入",
  };
  const DEFAULT_VIEW = {
    status: "", tag: "", sys_type: "", queue: "", q: "", sort: "created", size: 50, page: 1,
  };
  const FILTERS = ["status", "tag", "sys_type", "queue", "q"];

  const $ = (id) => document.getElementById(id);

  let me = null; // {name, role} of the token, read once per login
  let view = readHash();
  let total = 0;
  let tasks = new Map(); // the rows on the page: task_id -> task, in the server's order
  const details = new Map(); // task_id -> {signature, lastRun, upcoming, windows}, page rows only
  const selected = new Set(); // task ids ticked on this page
  let allMatching = false; // the selection is "every task the filters match"
  let dispatcherStatus = null;
  let stream = null; // the live event connection: {controller, live}
  let lastEventId = null; // where a new connection resumes, so that nothing is missed
  let refreshing = null;
  let refreshAgain = false;
  let listing = false; // a page read is in flight
  let pollTimer = null;
  let eventTimer = null;
  let eventDue = 0;

  // ---------------------------------------------------------------- API

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(status, body) {
      super(body.error || `HTTP ${status}`);
      this.status = status;
      this.details = Array.isArray(body.details) ? body.details : [];
    }
  }

  function authHeaders(headers) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  async function api(path, { method = "GET", body, signal } = {}) {
    const headers = authHeaders({ Accept: "application/json" });
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${API}${path}`, {
      method,
      headers,
      signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) throw new Unauthorized();
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, payload);
    return payload;
  }

  // What an error tells an operator: the API's own message, or that the network failed.
  function errorText(error) {
    return error instanceof ApiError ? error.message : `网络错误（${error.message}）`;
  }

  const taskPath = (id) => `/tasks/${encodeURIComponent(id)}`;

  const may = (role) => Boolean(me) && ROLE_RANK[me.role] >= ROLE_RANK[role];

  // crypto.randomUUID exists only in secure contexts (HTTPS, localhost); a dashboard opened
  // over plain HTTP on a LAN address still needs an id that makes a retry safe.
  function newRequestId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return [...crypto.getRandomValues(new Uint8Array(16))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---------------------------------------------------------------- the view (URL hash)

  // The hash keeps the view, so a reload, a bookmark or a link shows the same page.
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const size = Number(params.get("size"));
    const page = Number(params.get("page"));
    const status = params.get("status") || "";
    return {
      status: status in STATUS_TEXT ? status : "",
      tag: params.get("tag") || "",
      sys_type: params.get("sys_type") || "",
      queue: params.get("queue") || "",
      q: params.get("q") || "",
      sort: params.get("sort") === "next" ? "next" : "created",
      size: PAGE_SIZES.includes(size) ? size : DEFAULT_VIEW.size,
      page: Number.isInteger(page) && page >= 1 ? page : 1,
    };
  }

  function viewParams(v) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(v)) {
      if (value !== DEFAULT_VIEW[key]) params.set(key, String(value));
    }
    return params;
  }

  const viewKey = (v) => viewParams(v).toString();

  const filtersOf = (v) => Object.fromEntries(FILTERS.filter((f) => v[f]).map((f) => [f, v[f]]));

  function listQuery(v) {
    const params = new URLSearchParams(filtersOf(v));
    if (v.sort !== "created") params.set("sort", v.sort);
    params.set("limit", String(v.size));
    params.set("offset", String((v.page - 1) * v.size));
    return params.toString();
  }

  function setView(changes) {
    const next = { ...view, ...changes };
    if (viewKey(next) === viewKey(view)) return;
    view = next;
    const hash = viewKey(view);
    // replaceState, not location.hash: no hashchange event, so one change is one refresh.
    history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
    // A selection is of rows seen: other rows are not what the operator ticked.
    clearSelection();
    syncControls();
    refresh();
  }

  function syncControls() {
    $("filter-status").value = view.status;
    $("filter-sort").value = view.sort;
    $("page-size").value = String(view.size);
    // Not while the operator types there: the field would jump under the cursor.
    for (const [id, key] of [["filter-tag", "tag"], ["filter-sys-type", "sys_type"],
      ["filter-queue", "queue"], ["filter-q", "q"]]) {
      if (document.activeElement !== $(id)) $(id).value = view[key];
    }
  }

  // ---------------------------------------------------------------- refresh

  function signature(task) {
    return [task.status, task.next_execution_time, task.round_num, task.updated_at,
      task.interval, task.windows.join(","), task.jitter_s].join("|");
  }

  function refresh() {
    // Nothing to load while the token form waits for the operator.
    if (!$("login").hidden) return Promise.resolve(false);
    // One refresh at a time; a request during one runs once more when it ends.
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = (async () => {
      const asked = viewKey(view);
      listing = true;
      setBusy();
      try {
        const [who, status, list] = await Promise.all([
          me || api("/me"),
          api("/dispatcher/status"),
          api(`/tasks/?${listQuery(view)}`),
        ]);
        me = who;
        dispatcherStatus = status;
        // The view changed while this page was read: the next round reads the new one.
        if (asked !== viewKey(view)) {
          refreshAgain = true;
          return false;
        }
        const pages = Math.max(1, Math.ceil(list.total / view.size));
        if (list.tasks.length === 0 && view.page > pages) {
          // Past the end (tasks deleted, a narrower filter from a link): show the last page.
          setView({ page: pages });
          return false;
        }
        total = list.total;
        tasks = new Map(list.tasks.map((task) => [task.task_id, task]));
        for (const id of selected) if (!tasks.has(id)) selected.delete(id);
        showBanner(null);
        $("loading").hidden = true;
        $("content").hidden = notificationsShown; // the notifications page is open
        render();
        loadDetails();
        return true;
      } catch (error) {
        if (error instanceof Unauthorized) askForToken();
        else showBanner(`无法读取数据：${errorText(error)}`);
        return false;
      } finally {
        listing = false;
        setBusy();
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

  // A refresh at most `delay` from now; an earlier one already planned covers this one.
  function refreshWithin(delay) {
    const due = Date.now() + delay;
    if (eventTimer !== null && eventDue <= due) return;
    clearTimeout(eventTimer);
    eventDue = due;
    eventTimer = setTimeout(() => {
      eventTimer = null;
      refresh();
    }, delay);
  }

  // ---------------------------------------------------------------- per-row details

  // The latest run and the next 24 hours are read for the rows on the page only, again only
  // when a row changed, all of them in one request (GET /tasks/days); rows render first and
  // fill in when it answers. A change while one is in flight is read right after it.
  let detailJob = null; // {signatures: Map(task_id -> signature)}
  let detailsAgain = false;

  const isDense = (task) => HORIZON_MS / (task.interval * 1000) > MAX_MARKS;

  function loadDetails() {
    for (const id of details.keys()) if (!tasks.has(id)) details.delete(id);
    if (detailJob) {
      detailsAgain = true;
      return;
    }
    const stale = [...tasks.values()].filter(
      (task) => details.get(task.task_id)?.signature !== signature(task),
    );
    if (stale.length === 0) {
      setBusy();
      return;
    }
    const job = (detailJob = { signatures: new Map(stale.map((t) => [t.task_id, signature(t)])) });
    setBusy();
    fetchDetails(job).finally(() => {
      detailJob = null;
      setBusy();
      if (detailsAgain) {
        detailsAgain = false;
        loadDetails();
      }
    });
  }

  async function fetchDetails(job) {
    const ids = [...job.signatures.keys()].map(encodeURIComponent).join(",");
    try {
      const answer = await api(`/tasks/days?ids=${ids}`);
      for (const day of answer.tasks) {
        if (!tasks.has(day.task_id)) continue; // left the page meanwhile
        details.set(day.task_id, {
          signature: job.signatures.get(day.task_id),
          lastRun: day.last_run,
          // The real starts (slot plus jitter), and the windows the server computed from
          // the task's calendar (windows, weekdays, blackout dates) for the next 24 hours.
          upcoming: day.upcoming.map((iso) => Date.parse(iso)),
          windows: day.windows_24h.map((w) => [Date.parse(w.start), Date.parse(w.end)]),
        });
      }
      renderSoon();
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      // Otherwise the next refresh tries again.
    }
  }

  function setBusy() {
    const busy = listing || detailJob !== null;
    $("accounts").setAttribute("aria-busy", String(busy));
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
    const headers = authHeaders({ Accept: "text/event-stream" });
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
    let data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim();
      else if (line.startsWith("id:")) id = line.slice(3).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (id) lastEventId = id;
    if (type.startsWith("notification.")) {
      // Saved or deleted by someone else: the notifications page, when open, shows it.
      if (notificationsShown) loadNotifications();
      return;
    }
    if (!EVENT_TYPES.includes(type)) return; // keep-alive comments and unknown types
    let taskId = null;
    let payload = {};
    try {
      payload = JSON.parse(data || "{}");
      taskId = payload.task_id || null;
    } catch {
      // Unreadable data: treat it as being about the rows shown.
    }
    const onPage = taskId !== null && tasks.has(taskId);
    if (type === "round.progress") {
      if (onPage) showProgress(tasks.get(taskId), payload);
      return;
    }
    if (type.startsWith("round.")) {
      // A change of a task's state comes as task.updated as well; a round event matters
      // only for a row shown, whose latest run it changes.
      if (!onPage) return;
      const known = details.get(taskId);
      if (known) known.signature = null;
      refreshWithin(VISIBLE_EVENT_MS);
      return;
    }
    refreshWithin(taskId === null || onPage ? VISIBLE_EVENT_MS : OTHER_EVENT_MS);
  }

  // A running round reports about once a second: its row takes the new progress in place,
  // with no request (a page of busy rounds would otherwise re-read the page every second).
  function showProgress(task, event) {
    const round = task.current_round;
    // The row shows another round (it ended, or a newer one started): the next read tells.
    if (!round || event.round_num !== task.round_num + 1) return;
    task.current_round = {
      ...round,
      progress: event.progress,
      fraction: event.fraction,
      progress_at: new Date(event.progress_ms).toISOString(),
    };
    renderSoon();
  }

  // A page left for another may be kept, frozen, in the back/forward cache: its stream
  // would hold a connection of the API (and the Redis connection behind it) for nothing,
  // and keep the API from shutting down gracefully.
  window.addEventListener("pagehide", () => {
    if (stream) {
      stream.controller.abort();
      stream = null;
    }
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    connectEvents();
    refresh();
  });

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
    me = null;
    form.hidden = false;
    $("loading").hidden = true;
    $("content").hidden = true;
    $("notifications-page").hidden = true;
    notificationsShown = false;
    $("whoami").hidden = true;
    for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
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

  function formatDateTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
      + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
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
      case "weekday": return `今天不在执行的星期内，${formatTime(Date.parse(reason.next_run))} 执行`;
      case "blackout": return `今天是停用日期，${formatTime(Date.parse(reason.next_run))} 执行`;
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

  function filterText(filters) {
    const parts = [];
    if (filters.status) parts.push(`状态 ${STATUS_TEXT[filters.status]}`);
    if (filters.tag) parts.push(`标签 ${filters.tag}`);
    if (filters.sys_type) parts.push(`sys_type ${filters.sys_type}`);
    if (filters.queue) parts.push(`队列 ${filters.queue}`);
    if (filters.q) parts.push(`账户以 “${filters.q}” 开头`);
    return parts.length ? parts.join("，") : "不限条件（所有任务）";
  }

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
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

  // An action's outcome stays visible for a while, whatever refreshes happen meanwhile.
  function showNotice(message) {
    $("notice").hidden = false;
    $("notice").textContent = message;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { $("notice").hidden = true; }, 8000);
  }

  // ---------------------------------------------------------------- rendering

  let renderTimer = null;

  // Details arrive one row at a time; the page is redrawn once per burst of them.
  function renderSoon() {
    if (renderTimer === null) {
      renderTimer = setTimeout(() => {
        renderTimer = null;
        if (!me) return; // logged out meanwhile
        renderTable();
        renderTimeline();
        tick();
      }, 30);
    }
  }

  function render() {
    renderRole();
    renderDispatcher();
    renderLimits();
    renderTable();
    renderPager();
    renderSelection();
    renderTimeline();
    tick();
  }

  function renderRole() {
    $("whoami").hidden = false;
    $("whoami").textContent = `${me.name} · ${ROLE_TEXT[me.role] || me.role}`;
    for (const node of document.querySelectorAll("[data-needs]")) node.hidden = !may(node.dataset.needs);
  }

  function renderDispatcher() {
    const s = dispatcherStatus;
    const state = $("dispatcher-state");
    state.textContent = s.is_running ? "调度中" : s.enabled ? "无存活 beat" : "调度器已停止";
    state.dataset.status = s.is_running ? "running" : s.enabled ? "error" : "paused";
    $("dispatcher-facts").textContent =
      `beat ${s.beats_alive} · worker ${s.workers_alive} · 积压 ${s.due_backlog}`;
    const toggle = $("dispatcher-toggle");
    toggle.hidden = !may("admin");
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

  function progressLine(round) {
    if (!round || round.progress === null) return null;
    const percent = round.fraction === null ? null : Math.round(round.fraction * 100);
    return el("div", {
      class: "progress small",
      title: `更新于 ${formatDateTime(Date.parse(round.progress_at))}`,
    },
    percent === null ? null : el("progress", { max: 100, value: percent }),
    percent === null ? null : `${percent}% `,
    round.progress);
  }

  function nextCell(task) {
    const round = task.current_round;
    if (round?.stopping) {
      return el("span", { class: "stopping" }, "本轮正在停止…", progressLine(round));
    }
    if (task.status === "paused" && round) {
      // Paused while its round runs: the round finishes (or is stopped), no next one follows.
      return el("span", { class: "stopping" }, "已暂停，本轮仍在运行", progressLine(round));
    }
    if (task.status === "running" && task.started_at) {
      return el("span", {}, "已运行 ",
        el("span", { class: "countdown", "data-since": Date.parse(task.started_at) }),
        progressLine(task.current_round));
    }
    if (task.status === "paused" && task.paused_until) {
      return `${formatTime(Date.parse(task.paused_until))} 恢复`;
    }
    if (task.status !== "pending" || !task.next_execution_time) return el("span", { class: "muted" }, "—");
    // When the round really starts (slot plus jitter): the slot alone made rows look late.
    const at = Date.parse(task.next_start || task.next_execution_time);
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
    if (may("operator")) {
      if (task.status === "pending" || task.status === "running") buttons.push(button("pause", "暂停"));
      if (task.status === "paused" || task.status === "error") buttons.push(button("resume", "恢复"));
      if (task.status === "pending") buttons.push(button("run", "立即执行"));
      if (task.current_round && !task.current_round.stopping) buttons.push(button("cancel", "停止本轮"));
    }
    if (may("admin")) buttons.push(button("edit", "编辑"));
    buttons.push(button("audit", "记录"));
    return el("div", { class: "actions" }, ...buttons);
  }

  // Rows whose data did not change are kept as they are: a refresh must not swap the
  // button under an operator's pointer (the click would be lost) for an identical one.
  const renderedRows = new Map(); // task_id -> {key, row}

  function renderTable() {
    const rows = [...tasks.values()].map((task) => {
      const key = JSON.stringify([task, details.get(task.task_id)?.lastRun, me.role]);
      const known = renderedRows.get(task.task_id);
      if (known?.key === key) return known.row;
      const row = tableRow(task);
      renderedRows.set(task.task_id, { key, row });
      return row;
    });
    for (const id of renderedRows.keys()) if (!tasks.has(id)) renderedRows.delete(id);
    $("accounts").tBodies[0].replaceChildren(...rows);
    for (const box of document.querySelectorAll("#accounts tbody input.pick")) {
      box.checked = allMatching || selected.has(box.dataset.taskId);
    }
    const filtered = FILTERS.some((f) => view[f]);
    $("empty").hidden = rows.length > 0;
    $("empty").textContent = filtered ? "没有符合筛选条件的任务。"
      : may("admin") ? "还没有任务：点击「新建任务」创建。" : "还没有任务。";
  }

  function tableRow(task) {
    return el("tr", { "data-task-id": task.task_id, "data-account": task.account_id },
      may("operator")
        ? el("td", { class: "select" },
          el("input", {
            type: "checkbox", class: "pick", "data-task-id": task.task_id,
            "aria-label": `选择 ${task.account_id}`,
          }))
        : null,
      el("td", {},
        el("div", { class: "name" }, task.account_name),
        el("div", { class: "muted small" }, task.account_id),
        task.tags.length ? el("div", { class: "tags small" }, task.tags.join(" · ")) : null,
        task.queue ? el("div", { class: "queue small muted" }, `队列 ${task.queue}`) : null),
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

  function renderPager() {
    const pages = Math.max(1, Math.ceil(total / view.size));
    const from = (view.page - 1) * view.size;
    $("page-range").textContent = total === 0 ? "共 0 个"
      : `第 ${from + 1}–${from + tasks.size} 个，共 ${total} 个`;
    $("page-of").textContent = `${view.page} / ${pages} 页`;
    $("prev-page").disabled = view.page <= 1;
    $("next-page").disabled = view.page >= pages;
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
      return el("div", { class: "tl-row", "data-status": task.status, "data-task-id": task.task_id },
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

  // ---------------------------------------------------------------- filters and paging

  $("filters").addEventListener("submit", (event) => event.preventDefault());

  let typingTimer = null;

  // What the filter boxes hold now, typing not yet applied included: any filter change
  // takes all of them, so the view never lags behind a box.
  function typedFilters() {
    clearTimeout(typingTimer);
    return {
      tag: $("filter-tag").value.trim(),
      sys_type: $("filter-sys-type").value.trim(),
      queue: $("filter-queue").value.trim(),
      q: $("filter-q").value.trim(),
    };
  }

  for (const id of ["filter-status", "filter-sort"]) {
    $(id).addEventListener("change", (event) => {
      setView({ ...typedFilters(), [event.target.name]: event.target.value, page: 1 });
    });
  }

  for (const id of ["filter-tag", "filter-sys-type", "filter-queue", "filter-q"]) {
    $(id).addEventListener("input", () => {
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => setView({ ...typedFilters(), page: 1 }), TYPING_MS);
    });
  }

  $("page-size").addEventListener("change", (event) => {
    // Keep the first row shown on the new page.
    const first = (view.page - 1) * view.size;
    const size = Number(event.target.value);
    setView({ size, page: Math.floor(first / size) + 1 });
  });
  $("prev-page").addEventListener("click", () => setView({ page: Math.max(1, view.page - 1) }));
  $("next-page").addEventListener("click", () => setView({ page: view.page + 1 }));

  window.addEventListener("hashchange", () => {
    clearTimeout(typingTimer); // the address wins over what was being typed
    view = readHash();
    clearSelection();
    syncControls();
    refresh();
  });

  // ---------------------------------------------------------------- selection

  function clearSelection() {
    selected.clear();
    allMatching = false;
    renderSelection();
  }

  function renderSelection() {
    const count = allMatching ? total : selected.size;
    const pageAll = tasks.size > 0 && [...tasks.keys()].every((id) => selected.has(id));
    $("bulk-bar").hidden = !may("operator") || count === 0;
    $("selection-text").textContent = allMatching
      ? `已选择符合筛选条件的全部 ${total} 个任务` : `已选择 ${count} 个任务`;
    const offer = !allMatching && pageAll && total > tasks.size;
    $("select-matching").hidden = !offer;
    $("select-matching").textContent = `选择符合筛选条件的全部 ${total} 个任务`;
    const pagePick = $("select-page");
    pagePick.checked = allMatching || pageAll;
    pagePick.indeterminate = !allMatching && !pageAll && selected.size > 0;
    for (const box of document.querySelectorAll("#accounts tbody input.pick")) {
      box.checked = allMatching || selected.has(box.dataset.taskId);
    }
  }

  $("select-page").addEventListener("change", (event) => {
    allMatching = false;
    if (event.target.checked) for (const id of tasks.keys()) selected.add(id);
    else selected.clear();
    renderSelection();
  });

  $("select-matching").addEventListener("click", () => {
    allMatching = true;
    renderSelection();
  });

  $("clear-selection").addEventListener("click", clearSelection);

  // ---------------------------------------------------------------- bulk actions

  let bulk = null; // the request the open confirmation is about

  function openBulk(action) {
    // What was selected when the operator asked: refreshes meanwhile do not change it.
    const scope = allMatching ? { select: filtersOf(view) } : { task_ids: [...selected] };
    const count = allMatching ? total : selected.size;
    if (count === 0) return;
    // One id per confirmation: confirming again after a lost reply repeats this request,
    // which the server answers from its record instead of acting twice.
    bulk = { action, scope, count, request_id: newRequestId() };
    const verb = BULK_TEXT[action];
    $("bulk-title").textContent = `${verb} ${count} 个任务？`;
    $("bulk-scope").textContent = allMatching
      ? `符合筛选条件的全部任务：${filterText(scope.select)}（执行时按条件重新选择）。`
      : "本页选中的任务。";
    $("bulk-pause-fields").hidden = action !== "pause" && action !== "cancel";
    $("bulk-until-field").hidden = action !== "pause";
    $("bulk-then-field").hidden = action !== "cancel";
    $("bulk-then").value = "next";
    $("bulk-warning").hidden = action !== "delete";
    $("bulk-until").value = "";
    $("bulk-note").value = "";
    $("bulk-error").hidden = true;
    $("bulk-confirm").textContent = `${verb} ${count} 个任务`;
    $("bulk-confirm").classList.toggle("danger", action === "delete");
    $("bulk-confirm").disabled = false;
    $("bulk-dialog").showModal();
  }

  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => openBulk(button.dataset.bulk));
  }

  $("bulk-cancel").addEventListener("click", () => $("bulk-dialog").close());

  $("bulk-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!bulk) return;
    const body = { action: bulk.action, request_id: bulk.request_id, ...bulk.scope };
    if (bulk.action === "pause" && $("bulk-until").value) body.until = $("bulk-until").value;
    if (bulk.action === "cancel") body.then = $("bulk-then").value;
    if ((bulk.action === "pause" || bulk.action === "cancel") && $("bulk-note").value.trim()) {
      body.note = $("bulk-note").value.trim();
    }
    $("bulk-confirm").disabled = true;
    $("bulk-error").hidden = true;
    try {
      const answer = await api("/tasks/bulk", { method: "POST", body });
      $("bulk-dialog").close();
      bulk = null;
      clearSelection();
      showBulkResult(answer);
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken();
        return;
      }
      $("bulk-error").hidden = false;
      $("bulk-error").textContent = error instanceof ApiError ? error.message
        : `${errorText(error)}；可再次确认，同一请求不会重复执行。`;
    } finally {
      $("bulk-confirm").disabled = false;
    }
    await refresh();
  });

  function showBulkResult(answer) {
    const verb = BULK_TEXT[answer.action] || answer.action;
    $("bulk-summary").textContent =
      `批量${verb}：选中 ${answer.selected} 个，成功 ${answer.changed} 个，失败 ${answer.failed} 个。`;
    const failures = answer.results.filter((item) => !item.ok);
    const items = failures.slice(0, MAX_FAILURES_SHOWN).map((item) =>
      el("li", { "data-task-id": item.task_id },
        el("span", { class: "name" }, item.account_id || item.task_id), `：${item.error}`));
    if (failures.length > MAX_FAILURES_SHOWN) {
      items.push(el("li", { class: "muted" }, `还有 ${failures.length - MAX_FAILURES_SHOWN} 个失败未列出`));
    }
    $("bulk-failures").replaceChildren(...items);
    $("bulk-result").dataset.failed = String(answer.failed);
    $("bulk-result").hidden = false;
  }

  $("bulk-result-close").addEventListener("click", () => { $("bulk-result").hidden = true; });

  // ---------------------------------------------------------------- create and edit

  const TEXT_FIELDS = ["sys_type", "task_type", "xhs_account_id", "xhs_account_name", "timezone",
    "start_at", "task_end_time", "user_query", "user_topic", "user_style", "user_target_audience",
    "queue"];
  const INT_FIELDS = ["interval", "jitter_s", "max_runs", "misfire_grace_s"];
  const LIST_FIELDS = ["windows", "blackout_dates", "tags"];
  const RUN_PARAMS = ["user_query", "user_topic", "user_style", "user_target_audience"];
  // Set at creation only: PATCH does not take them.
  const CREATE_ONLY = ["sys_type", "task_type", "xhs_account_id", "start_at"];
  // PATCH calls the account name by its TaskInfo name.
  const PATCH_NAME = { xhs_account_name: "account_name" };
  const FIELD_OF = { account_name: "xhs_account_name" };
  const SCHEMA = "openapi.json"; // relative, like API: the schema states the create defaults
  let createDefaults = null; // read from the schema when the create form first opens

  // The create form's starting values: the defaults of the create body's fields
  // (TaskSpec), as the API's schema states them; the form has windows, not the hour range.
  async function loadCreateDefaults() {
    if (createDefaults) return createDefaults;
    const response = await fetch(SCHEMA, { headers: { Accept: "application/json" } });
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, payload);
    const fields = payload.components.schemas.TaskSpec.properties;
    const given = (name) => fields[name].default;
    const hour = (h) => `${String(h).padStart(2, "0")}:00`;
    const [start, end] = given("valid_time_range");
    createDefaults = {
      task_type: given("task_type"), interval: given("interval"), windows: [`${hour(start)}-${hour(end)}`],
      weekdays: given("weekdays"), jitter_s: given("jitter_s"), misfire_policy: given("misfire_policy"),
      misfire_grace_s: given("misfire_grace_s"),
    };
    return createDefaults;
  }

  let editing = null; // {task_id, original form values} while editing, null while creating

  const form = $("task-form");
  const input = (name) => form.elements.namedItem(name);
  const splitList = (text) => text.split(/[,，\s]+/).filter(Boolean);

  // A task's fields as the form holds them (create names, lists as arrays, null for empty).
  function formValuesOf(task) {
    const kwargs = { ...task.kwargs };
    for (const name of RUN_PARAMS) delete kwargs[name];
    return {
      sys_type: task.sys_type, task_type: task.task_type, xhs_account_id: task.account_id,
      xhs_account_name: task.account_name, timezone: task.timezone, start_at: null,
      task_end_time: task.task_end_time, interval: task.interval, jitter_s: task.jitter_s,
      max_runs: task.max_runs, misfire_policy: task.misfire_policy,
      misfire_grace_s: task.misfire_grace_s, windows: task.windows, weekdays: task.weekdays,
      blackout_dates: task.blackout_dates, tags: task.tags, queue: task.queue,
      ...Object.fromEntries(RUN_PARAMS.map((name) => [name, task.kwargs[name] ?? null])),
      kwargs: Object.keys(kwargs).length ? kwargs : null,
    };
  }

  function fillForm(values) {
    for (const name of TEXT_FIELDS) input(name).value = values[name] ?? "";
    for (const name of INT_FIELDS) input(name).value = values[name] ?? "";
    for (const name of LIST_FIELDS) input(name).value = (values[name] || []).join(", ");
    input("misfire_policy").value = values.misfire_policy || "run_once";
    const days = new Set(values.weekdays || []);
    for (const box of form.querySelectorAll('input[name="weekdays"]')) box.checked = days.has(Number(box.value));
    input("kwargs").value = values.kwargs ? JSON.stringify(values.kwargs, null, 2) : "";
  }

  // The form's values, or the fields the browser could not read, by field.
  function readForm() {
    const values = {};
    const problems = {};
    for (const name of TEXT_FIELDS) values[name] = input(name).value.trim() || null;
    for (const name of INT_FIELDS) {
      const box = input(name);
      if (box.validity.badInput) problems[name] = "请输入整数";
      values[name] = box.value === "" ? null : Number(box.value);
    }
    for (const name of LIST_FIELDS) values[name] = splitList(input(name).value);
    values.misfire_policy = input("misfire_policy").value;
    values.weekdays = [...form.querySelectorAll('input[name="weekdays"]:checked')].map((box) => Number(box.value));
    values.kwargs = null;
    const raw = input("kwargs").value.trim();
    if (raw) {
      try {
        values.kwargs = JSON.parse(raw);
      } catch {
        problems.kwargs = "不是有效的 JSON";
      }
      if (!problems.kwargs && (typeof values.kwargs !== "object" || values.kwargs === null || Array.isArray(values.kwargs))) {
        problems.kwargs = "须为 JSON 对象，如 {\"depth\": 3}";
      }
    }
    return { values, problems };
  }

  function createBody(values) {
    const body = {};
    for (const [name, value] of Object.entries(values)) {
      if (value === null || (Array.isArray(value) && value.length === 0 && name !== "weekdays")) continue;
      body[name] = value;
    }
    return body;
  }

  // Only what the operator changed; a field emptied is cleared (null), not left as it was.
  function patchBody(values, original) {
    const body = {};
    for (const [name, value] of Object.entries(values)) {
      if (CREATE_ONLY.includes(name)) continue;
      if (JSON.stringify(value) === JSON.stringify(original[name])) continue;
      if (name === "kwargs" && value === null) continue; // merged: an empty box removes nothing
      body[PATCH_NAME[name] || name] = value;
    }
    return body;
  }

  function clearFormErrors() {
    $("task-form-error").hidden = true;
    for (const node of form.querySelectorAll(".field-error")) {
      node.hidden = true;
      node.textContent = "";
    }
    for (const node of form.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
  }

  // Next to its field when the form has one ("windows[1]" is the windows field), else on top.
  function showFieldError(field, message) {
    const name = FIELD_OF[field] || field.split(/[.[]/)[0];
    const block = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!block || block.hidden) return false;
    block.classList.add("invalid");
    const slot = block.querySelector(".field-error");
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent}；${message}` : message;
    return true;
  }

  function showFormError(message) {
    $("task-form-error").hidden = false;
    $("task-form-error").textContent = message;
  }

  // The form scrolls inside its dialog: bring the field at fault (or the message) into view.
  function revealFirstError() {
    const field = form.querySelector(".field.invalid");
    (field || $("task-form-error")).scrollIntoView({ block: "center" });
    field?.querySelector("input, select, textarea")?.focus();
  }

  async function openTaskForm(taskId) {
    clearFormErrors();
    editing = null;
    if (taskId) {
      let task;
      try {
        task = await api(taskPath(taskId));
      } catch (error) {
        if (error instanceof Unauthorized) askForToken();
        else showNotice(`无法读取任务：${errorText(error)}`);
        return;
      }
      editing = { task_id: taskId, original: formValuesOf(task) };
      fillForm(editing.original);
      $("task-title").textContent = `编辑 ${task.account_name}（${task.account_id}）`;
      $("task-submit").textContent = "保存修改";
      $("kwargs-label").textContent = "其他参数（JSON 对象，合并到现有参数）";
    } else {
      let defaults;
      try {
        defaults = await loadCreateDefaults();
      } catch (error) {
        showNotice(`无法读取创建任务的默认值：${errorText(error)}`);
        return;
      }
      fillForm(defaults);
      $("task-title").textContent = "新建任务";
      $("task-submit").textContent = "创建";
      $("kwargs-label").textContent = "其他参数（JSON 对象，可选）";
    }
    for (const name of CREATE_ONLY) input(name).disabled = Boolean(editing);
    form.querySelector('.field[data-field="start_at"]').hidden = Boolean(editing);
    $("task-submit").disabled = false;
    $("task-dialog").showModal();
    input(editing ? "xhs_account_name" : "xhs_account_id").focus();
  }

  $("create-task").addEventListener("click", () => openTaskForm(null));
  $("task-cancel").addEventListener("click", () => $("task-dialog").close());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFormErrors();
    const { values, problems } = readForm();
    if (Object.keys(problems).length) {
      for (const [field, message] of Object.entries(problems)) showFieldError(field, message);
      showFormError("请先更正标出的字段。");
      revealFirstError();
      return;
    }
    const body = editing ? patchBody(values, editing.original) : createBody(values);
    if (editing && Object.keys(body).length === 0) {
      showFormError("没有修改。");
      return;
    }
    $("task-submit").disabled = true;
    try {
      const answer = editing
        ? await api(taskPath(editing.task_id), { method: "PATCH", body })
        : await api("/tasks/", { method: "POST", body });
      $("task-dialog").close();
      showNotice(editing ? `已保存 ${answer.task_info.account_id}` : `已创建 ${answer.task_info.account_id}`);
      editing = null;
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken();
        return;
      }
      showFormError(errorText(error));
      if (error instanceof ApiError) {
        for (const detail of error.details) showFieldError(detail.field, detail.message);
      }
      revealFirstError();
      return;
    } finally {
      $("task-submit").disabled = false;
    }
    await refresh();
  });

  // ---------------------------------------------------------------- audit view

  function auditValue(value) {
    if (value === null || value === undefined) return "—";
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function auditEntry(entry) {
    const changes = Object.entries(entry.changes || {}).map(([field, change]) =>
      el("li", { "data-field": field },
        el("span", { class: "field-name" }, field), " ",
        el("span", { class: "before" }, auditValue(change.before)), " → ",
        el("span", { class: "after" }, auditValue(change.after))));
    return el("li", { class: "audit-entry", "data-action": entry.action },
      el("div", { class: "audit-head" },
        el("span", { class: "badge action" }, AUDIT_TEXT[entry.action] || entry.action),
        el("span", { class: "at" }, formatDateTime(Date.parse(entry.at))),
        el("span", { class: "actor" }, entry.actor),
        entry.request ? el("span", { class: "muted small", title: "批量请求" }, `批量 ${entry.request}`) : null),
      changes.length ? el("ul", { class: "changes" }, ...changes) : null,
      entry.note ? el("p", { class: "note" }, `备注：${entry.note}`) : null);
  }

  async function openAudit(taskId) {
    const task = tasks.get(taskId);
    $("audit-title").textContent = `操作记录 · ${task ? `${task.account_name}（${task.account_id}）` : taskId}`;
    $("audit-status").textContent = "加载中…";
    $("audit-entries").replaceChildren();
    $("audit-dialog").showModal();
    try {
      const answer = await api(`${taskPath(taskId)}/audit?limit=${AUDIT_LIMIT}`);
      $("audit-entries").replaceChildren(...answer.entries.map(auditEntry));
      $("audit-status").textContent = answer.entries.length
        ? `最新在前，共 ${answer.entries.length} 条${answer.entries.length === AUDIT_LIMIT ? "（只显示最近的）" : ""}`
        : "还没有记录。";
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else $("audit-status").textContent = `无法读取记录：${errorText(error)}`;
    }
  }

  $("audit-close").addEventListener("click", () => $("audit-dialog").close());

  // ---------------------------------------------------------------- stopping a round

  let cancelling = null; // the task whose round the open dialog stops

  function openCancel(taskId) {
    const task = tasks.get(taskId);
    if (!task) return;
    cancelling = taskId;
    $("cancel-title").textContent = `停止 ${task.account_id} 正在执行的轮次？`;
    $("cancel-then").value = "next";
    $("cancel-note").value = "";
    $("cancel-error").hidden = true;
    $("cancel-confirm").disabled = false;
    $("cancel-dialog").showModal();
  }

  $("cancel-close").addEventListener("click", () => $("cancel-dialog").close());

  $("cancel-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!cancelling) return;
    const body = { then: $("cancel-then").value };
    if ($("cancel-note").value.trim()) body.note = $("cancel-note").value.trim();
    $("cancel-confirm").disabled = true;
    try {
      await api(`${taskPath(cancelling)}/cancel`, { method: "POST", body });
      $("cancel-dialog").close();
      cancelling = null;
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken();
        return;
      }
      $("cancel-error").hidden = false;
      $("cancel-error").textContent = errorText(error);
    } finally {
      $("cancel-confirm").disabled = false;
    }
    await refresh();
  });

  // ---------------------------------------------------------------- row actions

  const ACTIONS = {
    pause: (id) => api(`${taskPath(id)}/pause`, { method: "POST" }),
    resume: (id) => api(`${taskPath(id)}/resume`, { method: "POST" }),
    run: (id) => api(`${taskPath(id)}/run`, { method: "POST" }),
  };

  $("accounts").addEventListener("change", (event) => {
    const box = event.target.closest("input.pick");
    if (!box) return;
    allMatching = false;
    if (box.checked) selected.add(box.dataset.taskId);
    else selected.delete(box.dataset.taskId);
    renderSelection();
  });

  $("accounts").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const { action, taskId } = button.dataset;
    if (action === "edit") return openTaskForm(taskId);
    if (action === "audit") return openAudit(taskId);
    if (action === "cancel") return openCancel(taskId);
    button.disabled = true;
    try {
      await ACTIONS[action](taskId);
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else showNotice(`操作失败：${errorText(error)}`);
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
      else showNotice(`操作失败：${errorText(error)}`);
    }
    await refresh();
  });

  // ---------------------------------------------------------------- notifications page

  // A page of its own, read only when shown (a page load of the accounts makes the same
  // few requests as before): the notifications, an edit form (admin), a test button, and
  // the recent deliveries of the one chosen, re-read every few seconds while shown.
  const NOTIFY_EVENTS = [
    ["task.error", "任务出错"], ["task.recovered", "出错的任务恢复"],
    ["task.overdue", "任务超时未执行"], ["task.caught_up", "超时的任务已开始"],
    ["queue.unserved", "队列无 worker 消费"], ["queue.served", "队列恢复消费"],
    ["beat.down", "beat 全部掉线"], ["beat.up", "beat 恢复"],
    ["worker.down", "worker 掉线"], ["worker.up", "worker 恢复"],
    ["round.failed", "轮次失败（消息较多）"], ["round.lost", "轮次丢失（消息较多）"],
    ["round.cancelled", "轮次被停止"],
  ];
  const FORMAT_TEXT = {
    json: "JSON", wecom: "企业微信", dingtalk: "钉钉", feishu: "飞书", slack: "Slack",
  };
  const DELIVERY_TEXT = { delivered: "已送达", retrying: "重试中", given_up: "已放弃" };
  const NOTIFY_DEFAULTS = {
    format: "json", events: ["task.error", "task.recovered"], overdue_after_s: 300, group_window_s: 30,
  };
  const DELIVERIES_POLL_MS = 2000;

  let notificationsShown = false;
  let notificationList = []; // NotificationInfo, in name order
  let deliveriesOf = null; // the notification whose recent deliveries are shown
  let deliveriesTimer = null;
  let notifyEditing = null; // the NotificationInfo being edited, null while creating

  const notifyPath = (name) => `/notifications/${encodeURIComponent(name)}`;
  const notifyForm = $("notification-form");

  $("n-events").replaceChildren(...NOTIFY_EVENTS.map(([event, label]) =>
    el("label", {}, el("input", { type: "checkbox", name: "events", value: event }), ` ${label} `,
      el("code", {}, event))));

  function showNotificationsPage(shown) {
    notificationsShown = shown;
    $("notifications-page").hidden = !shown;
    $("content").hidden = shown || !me;
    for (const [id, current] of [["page-accounts", !shown], ["page-notifications", shown]]) {
      if (current) $(id).setAttribute("aria-current", "page");
      else $(id).removeAttribute("aria-current");
    }
    clearTimeout(deliveriesTimer);
    if (shown) loadNotifications();
  }

  $("page-accounts").addEventListener("click", () => showNotificationsPage(false));
  $("page-notifications").addEventListener("click", () => showNotificationsPage(true));

  async function loadNotifications() {
    $("notifications").setAttribute("aria-busy", "true");
    try {
      notificationList = (await api("/notifications/")).notifications;
      renderNotifications();
      if (deliveriesOf && !notificationList.some((n) => n.name === deliveriesOf)) deliveriesOf = null;
      await loadDeliveries();
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else showNotice(`无法读取通知：${errorText(error)}`);
    } finally {
      $("notifications").setAttribute("aria-busy", "false");
    }
  }

  function notifyMatchText(match) {
    const parts = [];
    if (match.tags && match.tags.length) parts.push(`标签 ${match.tags.join("、")}`);
    if (match.queue) parts.push(`队列 ${match.queue}`);
    return parts.length ? parts.join(" 且 ") : "所有任务";
  }

  function renderNotifications() {
    const rows = notificationList.map((n) => {
      const button = (action, label, cls) => el("button", {
        type: "button", class: cls, "data-notify-action": action, "data-name": n.name,
      }, label);
      const actions = [button("deliveries", "投递记录")];
      if (may("admin")) {
        actions.push(button("test", "测试"), button("edit", "编辑"), button("delete", "删除", "danger"));
      }
      return el("tr", { "data-name": n.name, "aria-selected": String(n.name === deliveriesOf) },
        el("td", {}, el("div", { class: "name" }, n.name),
          n.has_secret ? el("div", { class: "muted small" }, "已签名") : null),
        el("td", { class: "url small" }, n.url),
        el("td", { class: "events small", title: n.events.join(", ") }, n.events.join(", ")),
        el("td", {}, FORMAT_TEXT[n.format] || n.format),
        el("td", { class: "small" }, notifyMatchText(n.match)),
        el("td", {}, el("div", { class: "actions" }, ...actions)));
    });
    $("notifications").tBodies[0].replaceChildren(...rows);
    $("notifications-empty").hidden = rows.length > 0;
    $("notifications-empty").textContent = may("admin")
      ? "还没有通知：点击「新建通知」，把告警发到 webhook 或企业微信、钉钉、飞书、Slack 群。"
      : "还没有通知。";
  }

  // The chosen notification's recent deliveries; read again every few seconds while the
  // page shows them (a test message's outcome arrives a moment after the click).
  async function loadDeliveries() {
    clearTimeout(deliveriesTimer);
    $("deliveries-section").hidden = !deliveriesOf;
    if (!deliveriesOf || !notificationsShown) return;
    const name = deliveriesOf;
    try {
      const detail = await api(notifyPath(name));
      if (name !== deliveriesOf) return;
      renderDeliveries(detail);
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken();
        return;
      }
      $("deliveries-status").textContent = `无法读取投递记录：${errorText(error)}`;
    }
    if (notificationsShown && deliveriesOf === name) {
      deliveriesTimer = setTimeout(loadDeliveries, DELIVERIES_POLL_MS);
    }
  }

  function renderDeliveries(detail) {
    $("deliveries-title").textContent = `最近的投递 · ${detail.name}`;
    const items = detail.recent_deliveries;
    $("deliveries-status").textContent = items.length
      ? `最新在前，共 ${items.length} 条；每次尝试一条，重试沿用同一投递 ID`
      : "还没有投递。";
    $("deliveries").tBodies[0].replaceChildren(...items.map((d) => el("tr", {
      "data-delivery-id": d.delivery_id, "data-event": d.event, "data-outcome": d.outcome,
    },
    el("td", {}, formatDateTime(Date.parse(d.at))),
    el("td", { class: "mono" }, d.event),
    el("td", {}, el("span", { class: "badge", "data-outcome": d.outcome }, DELIVERY_TEXT[d.outcome] || d.outcome)),
    el("td", { class: "num status-code" }, d.status_code === null ? "—" : String(d.status_code)),
    el("td", { class: "num attempts" }, String(d.attempts)),
    el("td", { class: "error small" }, [d.error || "",
      d.next_attempt_at ? `（${formatTime(Date.parse(d.next_attempt_at))} 重试）` : ""].join("") || "—"),
    el("td", { class: "mono small" }, d.delivery_id))));
    for (const row of $("notifications").tBodies[0].rows) {
      row.setAttribute("aria-selected", String(row.dataset.name === detail.name));
    }
  }

  function showDeliveries(name) {
    deliveriesOf = name;
    renderNotifications();
    $("deliveries-status").textContent = "加载中…";
    $("deliveries").tBodies[0].replaceChildren();
    loadDeliveries();
  }

  $("notifications").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-notify-action]");
    if (!button) return;
    const { notifyAction: action, name } = button.dataset;
    if (action === "deliveries") return showDeliveries(name);
    if (action === "edit") return openNotificationForm(notificationList.find((n) => n.name === name));
    if (action === "delete" && !window.confirm(`删除通知 ${name}？未发出的消息和投递记录一并删除。`)) return;
    button.disabled = true;
    try {
      if (action === "test") {
        const answer = await api(`${notifyPath(name)}/test`, { method: "POST" });
        showNotice(`已发送测试消息（投递 ID ${answer.delivery_id}），结果见下方投递记录`);
        showDeliveries(name);
      } else if (action === "delete") {
        await api(notifyPath(name), { method: "DELETE" });
        showNotice(`已删除通知 ${name}`);
        if (deliveriesOf === name) deliveriesOf = null;
        await loadNotifications();
      }
    } catch (error) {
      if (error instanceof Unauthorized) askForToken();
      else showNotice(`操作失败：${errorText(error)}`);
    } finally {
      button.disabled = false;
    }
  });

  // ---- the form

  const notifyInput = (name) => notifyForm.elements.namedItem(name);

  function openNotificationForm(notification) {
    notifyEditing = notification || null;
    clearNotifyErrors();
    const values = notification || NOTIFY_DEFAULTS;
    notifyInput("name").value = notification ? notification.name : "";
    notifyInput("name").disabled = Boolean(notification);
    notifyInput("url").value = notification ? notification.url : "";
    notifyInput("format").value = values.format;
    const chosen = new Set(values.events);
    for (const box of notifyForm.querySelectorAll('input[name="events"]')) box.checked = chosen.has(box.value);
    notifyInput("secret").value = "";
    // Write-only: the API never returns the secret, only whether there is one.
    notifyInput("secret").placeholder = notification?.has_secret
      ? "已设置；留空则保留原密钥" : "未设置（可选；设置后消息带签名）";
    $("n-clear-secret").checked = false;
    $("n-clear-secret-field").hidden = !notification?.has_secret;
    notifyInput("match_tags").value = (notification?.match.tags || []).join(", ");
    notifyInput("match_queue").value = notification?.match.queue || "";
    notifyInput("overdue_after_s").value = values.overdue_after_s;
    notifyInput("group_window_s").value = values.group_window_s;
    $("notification-title").textContent = notification ? `编辑通知 ${notification.name}` : "新建通知";
    $("notification-submit").textContent = notification ? "保存修改" : "创建";
    $("notification-submit").disabled = false;
    $("notification-dialog").showModal();
    notifyInput(notification ? "url" : "name").focus();
  }

  $("create-notification").addEventListener("click", () => openNotificationForm(null));
  $("notification-cancel").addEventListener("click", () => $("notification-dialog").close());

  function clearNotifyErrors() {
    $("notification-form-error").hidden = true;
    for (const node of notifyForm.querySelectorAll(".field-error")) {
      node.hidden = true;
      node.textContent = "";
    }
    for (const node of notifyForm.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
  }

  // "events[2]" is the events field, "match.tags[0]" the tags field.
  function showNotifyFieldError(field, message) {
    const path = field.replace(/\[.*$/, "");
    const block = notifyForm.querySelector(`.field[data-field="${CSS.escape(path)}"]`)
      || notifyForm.querySelector(`.field[data-field="${CSS.escape(path.split(".")[0])}"]`);
    if (!block) return;
    block.classList.add("invalid");
    const slot = block.querySelector(".field-error");
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent}；${message}` : message;
  }

  // The PUT body: the whole definition (PUT replaces it), the secret only when one is typed
  // or the operator asks to remove it (left out, the stored one is kept).
  function notifyBody() {
    const problems = {};
    const number = (name) => {
      const box = notifyInput(name);
      if (box.validity.badInput || box.value === "") problems[name] = "请输入整数秒";
      return Number(box.value);
    };
    const tags = splitList(notifyInput("match_tags").value);
    const queue = notifyInput("match_queue").value.trim();
    const body = {
      url: notifyInput("url").value.trim(),
      events: [...notifyForm.querySelectorAll('input[name="events"]:checked')].map((box) => box.value),
      format: notifyInput("format").value,
      match: { tags: tags.length ? tags : null, queue: queue || null },
      overdue_after_s: number("overdue_after_s"),
      group_window_s: number("group_window_s"),
    };
    const secret = notifyInput("secret").value;
    if (secret) body.secret = secret;
    else if ($("n-clear-secret").checked) body.secret = null;
    if (!notifyEditing && !notifyInput("name").value.trim()) problems.name = "请填写名称";
    if (body.events.length === 0) problems.events = "至少选择一个事件";
    return { body, problems };
  }

  notifyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearNotifyErrors();
    const { body, problems } = notifyBody();
    const showError = (message) => {
      $("notification-form-error").hidden = false;
      $("notification-form-error").textContent = message;
    };
    if (Object.keys(problems).length) {
      for (const [field, message] of Object.entries(problems)) showNotifyFieldError(field, message);
      showError("请先更正标出的字段。");
      return;
    }
    const name = notifyEditing ? notifyEditing.name : notifyInput("name").value.trim();
    $("notification-submit").disabled = true;
    try {
      await api(notifyPath(name), { method: "PUT", body });
      $("notification-dialog").close();
      showNotice(`已保存通知 ${name}`);
      notifyEditing = null;
      await loadNotifications();
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken();
        return;
      }
      showError(errorText(error));
      if (error instanceof ApiError) {
        for (const detail of error.details) showNotifyFieldError(detail.field, detail.message);
      }
    } finally {
      $("notification-submit").disabled = false;
    }
  });

  // ---------------------------------------------------------------- start

  syncControls();
  setInterval(tick, 1000);
  // The timeline's left edge is "now": move it along once a minute.
  setInterval(() => { if (tasks.size) renderTimeline(); }, 60_000);
  // The stream first: whatever changes while the first page loads arrives as an event
  // and triggers one more refresh, instead of being missed.
  connectEvents();
  refresh().then(() => schedulePoll());
})();
