// The app logs on the environment page: a WebSocket to the environment's log consumer
// (web/consumers.py, AppLogConsumer), the lines it sends, a search box, a host choice, and a
// follow switch that keeps the newest line in sight.
//
// The top half (AppLogLines, lineMatches, pathWithFilters, clockTime) is pure: no DOM,
// no globals, so Node's test runner can exercise it directly. The DOM and the socket sit below;
// the module starts itself on a page that has a #app-logs section.

import { nextBackoff, parseAnsi, websocketUrl } from "./run_log.js";

// Lines held by the page: the oldest go once there are more. The download has the rest.
const MOST_LINES_KEPT = 5000;
// A close with these codes is an answer, not a network blip: no reconnecting.
const FINAL_CLOSE_CODES = new Set([4400, 4401, 4404]);
// Typing in the search box asks the server for older matches once the typing pauses.
const SEARCH_PAUSE_MS = 400;

/**
 * The lines the page holds, oldest first, each as the server sent it:
 * {at, host, slot, release, replica, stream, text}, `at` an ISO 8601 time in UTC with
 * microseconds, so that comparing the strings compares the times.
 */
export class AppLogLines {
  lines = [];
  #limit;

  constructor({ limit = MOST_LINES_KEPT } = {}) {
    this.#limit = limit;
  }

  get lastAt() {
    return this.lines.at(-1)?.at ?? "";
  }

  /**
   * Take in a message's lines; returns those that were new. A backlog sent again after a
   * reconnection repeats lines already held: only those after the newest one held are new.
   */
  add(lines, { backlog = false } = {}) {
    const lastAt = this.lastAt;
    const fresh = backlog ? lines.filter((line) => line.at > lastAt) : lines;
    this.lines.push(...fresh);
    const excess = this.lines.length - this.#limit;
    if (excess > 0) this.lines.splice(0, excess);
    return fresh;
  }

  clear() {
    this.lines = [];
  }
}

/** Does `line` hold `search`, ignoring case? Everything does an empty search. */
export function lineMatches(line, search) {
  return search === "" || line.text.toLowerCase().includes(search.toLowerCase());
}

/**
 * The socket's or the download's path for the host and search chosen (each left out when
 * empty): the download has the lines the view shows, and older ones.
 */
export function pathWithFilters(path, { host = "", search = "" } = {}) {
  const query = new URLSearchParams();
  if (host) query.set("host", host);
  if (search) query.set("search", search);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** 14:03:22.481 in the reader's time zone: the date is seldom in doubt in a live log. */
export function clockTime(isoTime, { timeZone } = {}) {
  const date = new Date(isoTime);
  if (Number.isNaN(date.getTime())) return "";
  const time = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZone,
  }).format(date);
  return `${time}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

function lineElement(document, line) {
  const row = document.createElement("div");
  row.className = `app-log-line stream-${line.stream}`;
  const meta = document.createElement("span");
  meta.className = "app-log-meta";
  const time = document.createElement("time");
  time.dateTime = line.at;
  time.title = line.at;
  time.textContent = clockTime(line.at);
  const where = document.createElement("span");
  where.className = "app-log-where";
  const replica = line.replica > 1 ? ` #${line.replica}` : "";
  where.textContent = `${line.host} ${line.slot} r${line.release}${replica}`;
  const stream = document.createElement("span");
  stream.className = "app-log-stream";
  stream.textContent = { stdout: "out", stderr: "err" }[line.stream] ?? line.stream;
  meta.append(time, " ", where, " ", stream);
  const text = document.createElement("span");
  text.className = "app-log-text";
  for (const segment of parseAnsi(line.text)) {
    const piece = document.createElement("span");
    piece.textContent = segment.text;
    if (segment.classes.length) piece.className = segment.classes.join(" ");
    if (segment.style) piece.style.cssText = segment.style;
    text.append(piece);
  }
  row.append(meta, " ", text);
  return row;
}

/**
 * Show the app logs in `section` (#app-logs): its data-ws-url is the socket's path and its
 * data-download-url the download's. Returns {lines, stop}.
 */
export function startAppLogs(section, { WebSocketImpl = WebSocket, location = window.location } = {}) {
  if (section.appLogs) return section.appLogs;
  const document = section.ownerDocument;
  const box = section.querySelector("#app-log");
  const form = section.querySelector("#app-log-filters");
  const status = section.querySelector("#app-log-status");
  const download = section.querySelector("#app-log-download");
  const follow = form.elements.follow;
  const lines = new AppLogLines();
  let socket = null;
  let retryDelayMs = 0;
  let retryTimer = null;
  let searchTimer = null;
  let stopped = false;

  const filters = () => ({ host: form.elements.host?.value ?? "", search: form.elements.search.value });
  const say = (text) => {
    status.value = text;
  };
  const scrollToEnd = () => {
    if (follow.checked) box.scrollTop = box.scrollHeight;
  };
  const show = (fresh) => {
    const { search } = filters();
    for (const line of fresh) {
      const row = lineElement(document, line);
      row.hidden = !lineMatches(line, search);
      box.append(row);
    }
    while (box.childElementCount > lines.lines.length) box.firstElementChild.remove();
    scrollToEnd();
  };
  const filterShown = () => {
    const { search } = filters();
    lines.lines.forEach((line, index) => {
      box.children[index].hidden = !lineMatches(line, search);
    });
  };

  const connect = () => {
    retryTimer = null;
    const path = pathWithFilters(section.dataset.wsUrl, filters());
    const current = new WebSocketImpl(websocketUrl(path, location));
    socket = current;
    say(lines.lines.length ? "Reconnecting…" : "Connecting…");
    current.onmessage = (event) => {
      if (current !== socket) return;
      retryDelayMs = 0;
      const message = JSON.parse(event.data);
      if (message.type !== "lines") return;
      show(lines.add(message.lines, { backlog: message.backlog }));
      say(follow.checked ? "Following" : "Paused: the newest lines are below");
    };
    current.onclose = (event) => {
      if (current !== socket || stopped) return;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        say(event.code === 4401 ? "Log in again to follow the logs." : "These logs cannot be shown.");
        return;
      }
      say("Disconnected; trying again…");
      retryDelayMs = nextBackoff(retryDelayMs);
      retryTimer = setTimeout(connect, retryDelayMs);
    };
  };

  // Another host or search: the lines held are not those asked for any more.
  const reconnect = () => {
    clearTimeout(retryTimer);
    const previous = socket;
    socket = null;
    previous?.close();
    lines.clear();
    box.replaceChildren();
    retryDelayMs = 0;
    connect();
  };
  const showDownloadPath = () => {
    download.href = pathWithFilters(section.dataset.downloadUrl, filters());
  };

  form.addEventListener("submit", (event) => event.preventDefault());
  form.elements.search.addEventListener("input", () => {
    filterShown();
    showDownloadPath();
    clearTimeout(searchTimer);
    searchTimer = setTimeout(reconnect, SEARCH_PAUSE_MS);
  });
  form.elements.host?.addEventListener("change", () => {
    showDownloadPath();
    reconnect();
  });
  follow.addEventListener("change", () => {
    scrollToEnd();
    say(follow.checked ? "Following" : "Paused: the newest lines are below");
  });
  // Scrolling up to read stops following; back at the bottom, it follows again.
  box.addEventListener("scroll", () => {
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    if (follow.checked !== atEnd) {
      follow.checked = atEnd;
      say(atEnd ? "Following" : "Paused: the newest lines are below");
    }
  });

  showDownloadPath();
  connect();
  section.appLogs = {
    lines,
    stop() {
      stopped = true;
      clearTimeout(retryTimer);
      clearTimeout(searchTimer);
      socket?.close();
    },
  };
  return section.appLogs;
}

// In a page (not under Node's test runner). The environment page refreshes itself while a
// deployment runs; the section is kept as it is (hx-preserve), socket and lines with it, and
// its scroll position is put back should the browser lose it in the move.
if (typeof document !== "undefined") {
  const section = document.getElementById("app-logs");
  if (section) {
    startAppLogs(section);
    let scrolled = null;
    document.addEventListener("htmx:beforeSwap", () => {
      scrolled = section.querySelector("#app-log")?.scrollTop ?? null;
    });
    document.addEventListener("htmx:afterSwap", () => {
      const box = section.querySelector("#app-log");
      if (box && scrolled !== null) box.scrollTop = scrolled;
    });
  }
}
