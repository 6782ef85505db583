// The live build log on the run page: a WebSocket to the run's Channels consumer, an ANSI
// colour parser, a line buffer, and a virtualised view.
//
// The top half (parseAnsi, LogLines, nextBackoff, websocketUrl) is pure: no DOM, no globals,
// so Node's test runner can exercise it directly. DOM and socket code sits below it.

// ---------------------------------------------------------------------------------------------
// ANSI escapes
// ---------------------------------------------------------------------------------------------

const COLOUR_NAMES = [
  "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
  "bright-black", "bright-red", "bright-green", "bright-yellow",
  "bright-blue", "bright-magenta", "bright-cyan", "bright-white",
];

// The six channel levels of xterm's 6×6×6 colour cube (palette entries 16-231).
const XTERM_CUBE_LEVELS = [0, 95, 135, 175, 215, 255];

// Frozen because every plain line shares it: 100,000 lines must not mean 100,000 state objects.
const DEFAULT_ANSI_STATE = Object.freeze({
  bold: false, dim: false, italic: false, underline: false, fg: null, bg: null,
});

// Tried in order at each ESC, so the first alternative that fits wins:
//   1. SGR, ESC[...m: colours and attributes; its parameters are captured and applied.
//   2. Any other complete CSI (cursor movement, ESC[K, ESC[?25l): dropped.
//   3. A CSI cut off by the end of the text (a line still arriving): dropped, not shown as "[3".
//   4. OSC (window titles, hyperlinks) up to BEL, ST or the end of the text: dropped.
//   5. Any other escape (ESC ( B, ESC 7, ESC =), or a lone ESC at the end: dropped.
const ESCAPE_SEQUENCE =
  /\x1b(?:\[([0-9;:]*)m|\[[0-?]*[ -\/]*[@-~]|\[[0-?]*[ -\/]*$|\][^\x07\x1b]*(?:\x07|\x1b\\|$)|[ -\/]*[0-~]|$)/g;

// Control characters left once escapes are gone (bell, backspace, a stray ESC or newline) would
// show as boxes or break the fixed row height. Tab stays: rows are white-space: pre.
const CONTROL_CHARACTERS = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/** Split one log line into styled segments: [{text, classes, style}], escapes removed. */
export function parseAnsi(text, startState = DEFAULT_ANSI_STATE) {
  const segments = [];
  scanAnsi(text, startState, (piece, state) => {
    const visible = piece.replace(CONTROL_CHARACTERS, "");
    if (visible !== "") appendSegment(segments, visible, state);
  });
  return segments;
}

// The colours and attributes in force at the end of `text`, for the line that follows it.
function ansiStateAfter(text, startState = DEFAULT_ANSI_STATE) {
  if (!text.includes("\x1b")) return startState;
  return scanAnsi(text, startState, () => {});
}

function scanAnsi(text, startState, onText) {
  let state = startState;
  let position = 0;
  for (const match of text.matchAll(ESCAPE_SEQUENCE)) {
    onText(text.slice(position, match.index), state);
    const sgrParameters = match[1];
    if (sgrParameters !== undefined) state = applySgr(state, sgrParameters);
    position = match.index + match[0].length;
  }
  onText(text.slice(position), state);
  return state;
}

function appendSegment(segments, text, state) {
  const classes = ansiClasses(state);
  const style = ansiStyle(state);
  const previous = segments.at(-1);
  // An escape that changed nothing (ESC[K, a repeated colour) should not split the text.
  if (previous && previous.style === style && previous.classes.join(" ") === classes.join(" ")) {
    previous.text += text;
  } else {
    segments.push({ text, classes, style });
  }
}

function applySgr(state, parameterText) {
  const next = { ...state };
  const parameters = parameterText.split(";");
  for (let index = 0; index < parameters.length; index++) {
    const [code, ...subparameters] = parameters[index].split(":").map(sgrNumber);
    if (code === 38 || code === 48 || code === 58) {
      // The colon form carries its own arguments (38:5:196); the semicolon form borrows the
      // parameters that follow (38;5;196), which must then be skipped, not read as codes.
      const usesColons = subparameters.length > 0;
      const colourArguments = usesColons ? subparameters : parameters.slice(index + 1).map(sgrNumber);
      const { colour, consumed } = extendedColour(colourArguments, usesColons);
      if (!usesColons) index += consumed;
      // 58 is the underline colour: parsed only so that its arguments are skipped.
      if (colour !== undefined && code === 38) next.fg = colour;
      if (colour !== undefined && code === 48) next.bg = colour;
    } else {
      applySgrCode(next, code);
    }
  }
  return next;
}

function sgrNumber(parameter) {
  return parameter === "" ? 0 : Number(parameter);
}

function applySgrCode(state, code) {
  if (code === 0) Object.assign(state, DEFAULT_ANSI_STATE);
  else if (code === 1) state.bold = true;
  else if (code === 2) state.dim = true;
  else if (code === 3) state.italic = true;
  else if (code === 4) state.underline = true;
  else if (code === 22) Object.assign(state, { bold: false, dim: false });
  else if (code === 23) state.italic = false;
  else if (code === 24) state.underline = false;
  else if (code >= 30 && code <= 37) state.fg = code - 30;
  else if (code === 39) state.fg = null;
  else if (code >= 40 && code <= 47) state.bg = code - 40;
  else if (code === 49) state.bg = null;
  else if (code >= 90 && code <= 97) state.fg = code - 90 + 8;
  else if (code >= 100 && code <= 107) state.bg = code - 100 + 8;
  // Anything else (blink, inverse, fonts) is deliberately ignored.
}

// Returns the colour (a palette index, or "#rrggbb" for 24-bit) and how many arguments it used;
// colour is undefined when the arguments do not describe one.
function extendedColour(args, usesColons) {
  if (args[0] === 5) {
    const index = args[1];
    const valid = Number.isInteger(index) && index >= 0 && index <= 255;
    return { colour: valid ? index : undefined, consumed: 2 };
  }
  if (args[0] === 2) {
    // 38:2::r:g:b has an (empty) colour-space slot that 38;2;r;g;b does not.
    const channels = usesColons && args.length >= 5 ? args.slice(-3) : args.slice(1, 4);
    const valid = channels.length === 3 && channels.every((c) => Number.isInteger(c) && c >= 0 && c <= 255);
    return { colour: valid ? rgbHex(channels) : undefined, consumed: 4 };
  }
  return { colour: undefined, consumed: 0 };
}

function ansiClasses(state) {
  const classes = [];
  if (isNamedColour(state.fg)) classes.push(`ansi-fg-${COLOUR_NAMES[state.fg]}`);
  if (isNamedColour(state.bg)) classes.push(`ansi-bg-${COLOUR_NAMES[state.bg]}`);
  if (state.bold) classes.push("ansi-bold");
  if (state.dim) classes.push("ansi-dim");
  if (state.italic) classes.push("ansi-italic");
  if (state.underline) classes.push("ansi-underline");
  return classes;
}

// The 16 named colours are classes so the page's theme decides them; the other 240 palette
// entries and 24-bit colours have no sensible class names, so they become inline colours.
function ansiStyle(state) {
  const declarations = [];
  if (state.fg !== null && !isNamedColour(state.fg)) declarations.push(`color: ${cssColour(state.fg)}`);
  if (state.bg !== null && !isNamedColour(state.bg)) declarations.push(`background-color: ${cssColour(state.bg)}`);
  return declarations.join("; ");
}

function isNamedColour(colour) {
  return typeof colour === "number" && colour < COLOUR_NAMES.length;
}

function cssColour(colour) {
  return typeof colour === "string" ? colour : xterm256Hex(colour);
}

function xterm256Hex(index) {
  if (index >= 232) {
    const grey = 8 + 10 * (index - 232);
    return rgbHex([grey, grey, grey]);
  }
  const cube = index - 16;
  return rgbHex([
    XTERM_CUBE_LEVELS[Math.floor(cube / 36)],
    XTERM_CUBE_LEVELS[Math.floor(cube / 6) % 6],
    XTERM_CUBE_LEVELS[cube % 6],
  ]);
}

function rgbHex(channels) {
  return `#${channels.map((channel) => channel.toString(16).padStart(2, "0")).join("")}`;
}

// ---------------------------------------------------------------------------------------------
// The line buffer
// ---------------------------------------------------------------------------------------------

/**
 * The log as lines, built from chunks that may end mid-line.
 *
 * Lines only ever get added, and only the last one can still change (more text, or a `\r`
 * overwrite); the view relies on this to keep rows it has already drawn.
 * Each line is {text, stage, header, ansiState}: text keeps its escapes (parseAnsi renders it),
 * ansiState is the colour in force where the line starts, because like a terminal a colour
 * set on one line carries on to the next until something resets it.
 */
export class LogLines {
  lines = [];
  lastSeq;
  #stage = null;
  #openLine = null; // the last line until its newline arrives: later text continues it
  #carriageReturnPending = false;
  #nextLineAnsiState = DEFAULT_ANSI_STATE;

  constructor({ lastSeq = 0 } = {}) {
    this.lastSeq = lastSeq;
  }

  get lineCount() {
    return this.lines.length;
  }

  /** Apply one chunk; false (and nothing changes) when its seq is not newer than lastSeq. */
  append(seq, stage, text) {
    // The server numbers chunks in strictly increasing order, so a chunk at or below lastSeq is
    // one we have already applied. That happens around a reconnect: chunks in flight when the
    // socket dropped also come back in the backlog after `{"after": lastSeq}`. Applying one
    // twice would print its lines twice.
    if (!(seq > this.lastSeq)) return false;
    this.lastSeq = seq;
    if (stage !== this.#stage) this.#startStage(stage);
    this.#write(text);
    return true;
  }

  #startStage(stage) {
    this.#openLine = null;
    this.#carriageReturnPending = false;
    // A new stage is a new process: a colour the last one left switched on must not bleed in.
    this.#nextLineAnsiState = DEFAULT_ANSI_STATE;
    this.#stage = stage;
    if (stage) this.lines.push({ text: `── ${stage} ──`, stage, header: true, ansiState: DEFAULT_ANSI_STATE });
  }

  // "\r\n" needs no case of its own: the "\r" only marks the line for overwriting and the "\n"
  // ends it first. The same holds when a chunk ends between the two.
  #write(text) {
    for (const piece of text.split(/(\r|\n)/)) {
      if (piece === "\n") this.#endLine();
      else if (piece === "\r") this.#carriageReturnPending = true;
      else if (piece !== "") this.#writeText(piece);
    }
  }

  #writeText(text) {
    const line = this.#openLine ?? this.#startLine();
    if (this.#carriageReturnPending) {
      // Replace the line rather than overwrite it character by character: progress bars redraw
      // at the same width or wider, or erase the rest with ESC[K (which we strip), so replacing
      // shows their last state without tracking cursor columns through escape sequences.
      // The colour set by the replaced text still applies, as it would in a terminal.
      line.ansiState = ansiStateAfter(line.text, line.ansiState);
      line.text = "";
      this.#carriageReturnPending = false;
    }
    line.text += text;
  }

  #endLine() {
    const line = this.#openLine ?? this.#startLine();
    this.#nextLineAnsiState = ansiStateAfter(line.text, line.ansiState);
    this.#openLine = null;
    this.#carriageReturnPending = false;
  }

  #startLine() {
    const line = { text: "", stage: this.#stage, header: false, ansiState: this.#nextLineAnsiState };
    this.lines.push(line);
    this.#openLine = line;
    return line;
  }
}

// ---------------------------------------------------------------------------------------------
// Reconnection
// ---------------------------------------------------------------------------------------------

const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 10_000;

/** The wait before the next reconnect: 0.5 s, then doubling, capped at 10 s. */
export function nextBackoff(previousMs) {
  if (!(previousMs > 0)) return FIRST_RETRY_MS;
  return Math.min(previousMs * 2, LONGEST_RETRY_MS);
}

/** The ws:// or wss:// URL for a path, on the page's own host (wss when the page is https). */
export function websocketUrl(path, location) {
  const url = new URL(path, `${location.protocol}//${location.host}`);
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol === "http:") url.protocol = "ws:";
  return url.href;
}

const FINAL_STATUSES = new Set(["succeeded", "failed", "cancelled"]);

// ---------------------------------------------------------------------------------------------
// DOM: the virtualised view
// ---------------------------------------------------------------------------------------------

// Rows drawn above and below the visible ones, so a quick scroll does not flash empty space.
const OVERSCAN_LINES = 30;
// Used only if the log is hidden when it starts and its line height cannot be measured.
const FALLBACK_LINE_HEIGHT_PX = 18;

/**
 * Shows a LogLines in a fixed-height scroll container, drawing only the rows in view.
 *
 * Why virtualise: a long build log easily reaches 100,000 lines, and a DOM node per line makes
 * every layout, style recalculation and scroll slow enough to freeze the tab. Instead a spacer
 * as tall as all the lines gives the scrollbar its true size, and a block of rows covering the
 * viewport (plus OVERSCAN_LINES) is moved to the scroll position with a transform.
 * This needs every line to be exactly one line high, hence white-space: pre (long lines scroll
 * sideways rather than wrap) and the line height measured once, up front.
 * Chromium caps an element at about 33 million px tall, some 1.8 million lines: ample for a log.
 */
class VirtualLogView {
  #container;
  #document;
  #log;
  #requestFrame;
  #spacer;
  #rows;
  #lineHeight;
  #rowElements = [];
  #rowsFirstIndex = 0;
  #renderedLineCount = 0;
  #framePending = false;

  constructor(container, log, requestFrame) {
    this.#container = container;
    this.#document = container.ownerDocument;
    this.#log = log;
    this.#requestFrame = requestFrame;
    this.#buildSkeleton();
    this.#lineHeight = this.#measureLineHeight();
    container.addEventListener("scroll", () => this.scheduleRender(), { passive: true });
  }

  /** Redraw on the next frame; any number of chunks arriving before then cost one redraw. */
  scheduleRender() {
    if (this.#framePending) return;
    this.#framePending = true;
    this.#requestFrame(() => {
      this.#framePending = false;
      this.#render();
    });
  }

  #buildSkeleton() {
    const container = this.#container;
    this.#spacer = this.#document.createElement("div");
    this.#spacer.className = "log-spacer";
    this.#spacer.style.position = "relative";
    this.#rows = this.#document.createElement("div");
    this.#rows.className = "log-rows";
    Object.assign(this.#rows.style, { position: "absolute", top: "0", left: "0", minWidth: "100%", whiteSpace: "pre" });
    this.#spacer.append(this.#rows);
    container.replaceChildren(this.#spacer);
    container.style.overflow = "auto";
    container.style.position = "relative";
    // An empty container with no height from the page's CSS would collapse to nothing.
    if (container.clientHeight === 0) container.style.height = "32rem";
  }

  #measureLineHeight() {
    const probe = this.#document.createElement("div");
    probe.className = "log-line";
    probe.textContent = "M";
    this.#rows.append(probe);
    const height = probe.getBoundingClientRect().height;
    probe.remove();
    return height > 0 ? height : FALLBACK_LINE_HEIGHT_PX;
  }

  #render() {
    const container = this.#container;
    const lineCount = this.#log.lineCount;
    // Follow mode: decided before the spacer grows, from where the reader left the scrollbar.
    const following = this.#isScrolledToBottom();
    this.#spacer.style.height = `${lineCount * this.#lineHeight}px`;
    if (following) container.scrollTop = container.scrollHeight;

    const firstVisible = Math.floor(container.scrollTop / this.#lineHeight);
    const lastVisible = Math.ceil((container.scrollTop + container.clientHeight) / this.#lineHeight);
    const first = Math.max(0, firstVisible - OVERSCAN_LINES);
    const end = Math.min(lineCount, lastVisible + OVERSCAN_LINES);
    this.#renderRows(first, end);
    this.#rows.style.transform = `translateY(${first * this.#lineHeight}px)`;
    this.#renderedLineCount = lineCount;
    // Once more: a long line just drawn can bring in the horizontal scrollbar, which takes its
    // height off the viewport and would leave the newest line hidden behind it.
    if (following) container.scrollTop = container.scrollHeight;
  }

  #isScrolledToBottom() {
    const container = this.#container;
    const distance = container.scrollHeight - container.scrollTop - container.clientHeight;
    // Half a line of slack: zoomed pages scroll in fractional pixels and never quite reach 0.
    return distance <= this.#lineHeight / 2;
  }

  // Keeps the rows still in range and unchanged, and builds only the new ones: less work per
  // frame, and a text selection in the log survives new output arriving below it.
  #renderRows(first, end) {
    const oldFirst = this.#rowsFirstIndex;
    const oldEnd = oldFirst + this.#rowElements.length;
    // The line that was last at the previous render may have grown or been overwritten since.
    const keepFirst = Math.max(first, oldFirst);
    const keepEnd = Math.min(end, oldEnd, this.#renderedLineCount - 1);
    const kept = [];
    this.#rowElements.forEach((row, offset) => {
      const index = oldFirst + offset;
      if (index >= keepFirst && index < keepEnd) kept.push(row);
      else row.remove();
    });
    const above = kept.length ? this.#buildRows(first, keepFirst) : [];
    const below = kept.length ? this.#buildRows(keepEnd, end) : this.#buildRows(first, end);
    this.#rows.prepend(...above);
    this.#rows.append(...below);
    this.#rowElements = [...above, ...kept, ...below];
    this.#rowsFirstIndex = first;
  }

  #buildRows(first, end) {
    const rows = [];
    for (let index = first; index < end; index++) rows.push(this.#buildRow(this.#log.lines[index]));
    return rows;
  }

  #buildRow(line) {
    const row = this.#document.createElement("div");
    row.className = line.header ? "log-line log-stage" : "log-line";
    // Lets the page mark each line with its stage in CSS, e.g. [data-stage]::before.
    row.dataset.stage = line.stage ?? "";
    row.style.height = `${this.#lineHeight}px`;
    for (const segment of parseAnsi(line.text, line.ansiState)) row.append(this.#segmentNode(segment));
    return row;
  }

  // Text goes in through text nodes and textContent only, never innerHTML: a log line that says
  // <script> must show as text.
  #segmentNode(segment) {
    if (segment.classes.length === 0 && segment.style === "") return this.#document.createTextNode(segment.text);
    const span = this.#document.createElement("span");
    span.className = segment.classes.join(" ");
    // Through the CSSOM rather than a style attribute, which a strict CSP would block.
    if (segment.style) span.style.cssText = segment.style;
    span.textContent = segment.text;
    return span;
  }
}

// ---------------------------------------------------------------------------------------------
// DOM: run and stage status
// ---------------------------------------------------------------------------------------------

function showRunStatus(document, run) {
  showStatus(document.getElementById("run-status"), run.status);
  const failureReason = document.getElementById("failure-reason");
  if (failureReason) failureReason.textContent = run.failure_reason ?? "";
  for (const stage of run.stages ?? []) showStageStatus(document, stage);
}

function showStageStatus(document, stage) {
  // Matched through dataset rather than a [data-stage="..."] selector, which a stage name
  // containing a quote would break.
  const item = [...document.querySelectorAll("li[data-stage]")].find((li) => li.dataset.stage === stage.name);
  if (!item) return;
  showStatus(item.querySelector(".status"), stage.status);
  const duration = item.querySelector(".duration");
  if (duration && stage.duration !== null && stage.duration !== undefined) {
    duration.textContent = `${Number(stage.duration).toFixed(1)} s`;
  }
}

function showStatus(element, status) {
  if (!element) return;
  element.textContent = status;
  element.className = `status status-${status}`;
}

// ---------------------------------------------------------------------------------------------
// The socket
// ---------------------------------------------------------------------------------------------

/**
 * Keeps a WebSocket open to the run's consumer, reconnecting with backoff until `shouldReconnect`
 * says the run is over. Each (re)connection starts with {"after": lastSeq()} so the server
 * resends exactly what we are missing.
 */
class RunSocket {
  #url;
  #WebSocketImpl;
  #lastSeq;
  #onMessage;
  #shouldReconnect;
  #socket = null;
  #retryDelayMs = 0;
  #retryTimer = null;
  #stopped = false;

  constructor({ url, WebSocketImpl, lastSeq, onMessage, shouldReconnect }) {
    this.#url = url;
    this.#WebSocketImpl = WebSocketImpl;
    this.#lastSeq = lastSeq;
    this.#onMessage = onMessage;
    this.#shouldReconnect = shouldReconnect;
  }

  connect() {
    this.#retryTimer = null;
    const socket = new this.#WebSocketImpl(this.#url);
    this.#socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ after: this.#lastSeq() }));
    socket.onmessage = (event) => {
      // Reset the backoff on a message rather than on open: a server that accepts and then
      // drops us straight away should still be retried slowly.
      this.#retryDelayMs = 0;
      this.#onMessage(JSON.parse(event.data));
    };
    socket.onclose = () => this.#reconnectLater();
  }

  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#socket?.close();
  }

  #reconnectLater() {
    if (this.#stopped || !this.#shouldReconnect()) return;
    this.#retryDelayMs = nextBackoff(this.#retryDelayMs);
    this.#retryTimer = setTimeout(() => this.connect(), this.#retryDelayMs);
  }
}

/**
 * Stream the run's log into `element` (the #run-log div) and keep the status elements current.
 * Returns {log, stop}: the LogLines being shown, and a function that closes the socket for good.
 * `onStatus(run)` is called with every status message, after the page's badges are updated.
 */
export function startRunLog(
  element,
  {
    WebSocketImpl = WebSocket,
    location = window.location,
    requestFrame = (callback) => requestAnimationFrame(callback),
    onStatus = () => {},
  } = {},
) {
  const document = element.ownerDocument;
  const log = new LogLines({ lastSeq: Number(element.dataset.after) || 0 });
  const view = new VirtualLogView(element, log, requestFrame);
  // Seeded from the page so that opening an already finished run reads its log once and then
  // leaves the socket closed, even if the server sends no status message.
  let runStatus = document.getElementById("run-status")?.textContent.trim();

  const handleMessage = (message) => {
    if (message.type === "log") {
      if (log.append(message.seq, message.stage, message.text)) view.scheduleRender();
    } else if (message.type === "status") {
      runStatus = message.run.status;
      showRunStatus(document, message.run);
      onStatus(message.run);
    }
  };

  const socket = new RunSocket({
    url: websocketUrl(element.dataset.wsUrl, location),
    WebSocketImpl,
    lastSeq: () => log.lastSeq,
    onMessage: handleMessage,
    // Final and closed means nothing more will come; until then a close is a network blip.
    shouldReconnect: () => !FINAL_STATUSES.has(runStatus),
  });
  socket.connect();
  return { log, stop: () => socket.stop() };
}
