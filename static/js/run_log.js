// The live build log on the run page: a WebSocket to the run's Channels consumer, an ANSI
// colour parser, a line buffer, and a virtualised view.
//
// The top half (parseAnsi, LogLines, nextBackoff, websocketUrl, formatDuration, lineFromHash,
// SearchMatches) is pure: no DOM, no globals, so Node's test runner can exercise it directly.
// DOM and socket code sits below it: the view (line numbers, links to lines, folding, search
// results), the socket, the search box and startRunLog, which joins them on the run page.

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
 * Each line is {text, stage, section, header, number, ansiState}: text keeps its escapes
 * (parseAnsi renders it), ansiState is the colour in force where the line starts, because like
 * a terminal a colour set on one line carries on to the next until something resets it.
 *
 * A stage's chunks may belong to sections (its test steps, its services; "" for the stage's own
 * lines). Steps running side by side interleave their chunks, so each change of section starts
 * a new line under a header of its own, and a section coming back gets another ("continued").
 * A stage header has section null; a section header and the lines under it have the section.
 *
 * Lines of output are numbered from 1; the stage and section headers the view adds are not.
 * The server numbers the stored log by the same rules (web/log_lines.py): its search answers,
 * the failure banner's "jump to the error" and a copied #L<n> link all mean the line the view
 * numbers n.
 */
export class LogLines {
  lines = [];
  lastSeq;
  #indexOfNumber = []; // [n - 1] is the index in `lines` of line number n
  #stage = null;
  #section = "";
  #sectionsSeen = new Set(); // the sections of the current stage that have had a header
  #sectionAnsiStates = new Map(); // section -> the colour its next line starts in
  #openLine = null; // the last line until its newline arrives: later text continues it
  #carriageReturnPending = false;
  #nextLineAnsiState = DEFAULT_ANSI_STATE;

  constructor({ lastSeq = 0 } = {}) {
    this.lastSeq = lastSeq;
  }

  get lineCount() {
    return this.lines.length;
  }

  /** How many numbered lines (output, not headers) there are. */
  get numberedCount() {
    return this.#indexOfNumber.length;
  }

  /** The index in `lines` of line number n; undefined when there is no such line (yet). */
  indexOfNumber(number) {
    return this.#indexOfNumber[number - 1];
  }

  /**
   * Apply one chunk of a stage's section ("" for the stage's own lines); false (and nothing
   * changes) when its seq is not newer than lastSeq.
   */
  append(seq, stage, text, section = "") {
    // The server numbers chunks in strictly increasing order, so a chunk at or below lastSeq is
    // one we have already applied. That happens around a reconnect: chunks in flight when the
    // socket dropped also come back in the backlog after `{"after": lastSeq}`. Applying one
    // twice would print its lines twice.
    if (!(seq > this.lastSeq)) return false;
    this.lastSeq = seq;
    if (stage !== this.#stage) this.#startStage(stage, section);
    else if (section !== this.#section) this.#startSection(section);
    this.#write(text);
    return true;
  }

  #startStage(stage, section) {
    this.#openLine = null;
    this.#carriageReturnPending = false;
    // A new stage is a new process: a colour the last one left switched on must not bleed in.
    this.#nextLineAnsiState = DEFAULT_ANSI_STATE;
    this.#stage = stage;
    this.#section = "";
    this.#sectionsSeen = new Set();
    this.#sectionAnsiStates = new Map();
    if (stage) this.lines.push({ text: `── ${stage} ──`, stage, section: null, header: true, number: null, ansiState: DEFAULT_ANSI_STATE });
    if (section !== "") this.#startSection(section);
  }

  // Another section's output: the line the last one left open is not continued (its rest will
  // come in a chunk of its own, after its own header), and its colour waits for its return.
  #startSection(section) {
    const open = this.#openLine;
    this.#sectionAnsiStates.set(this.#section, open ? ansiStateAfter(open.text, open.ansiState) : this.#nextLineAnsiState);
    this.#openLine = null;
    this.#carriageReturnPending = false;
    this.#section = section;
    this.#nextLineAnsiState = this.#sectionAnsiStates.get(section) ?? DEFAULT_ANSI_STATE;
    const stage = this.#stage;
    let title;
    if (section === "") title = `${stage}, continued`;
    else title = this.#sectionsSeen.has(section) ? `${stage} › ${section}, continued` : `${stage} › ${section}`;
    this.#sectionsSeen.add(section);
    this.lines.push({ text: `── ${title} ──`, stage, section, header: true, number: null, ansiState: DEFAULT_ANSI_STATE });
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
    const number = this.#indexOfNumber.length + 1;
    const line = { text: "", stage: this.#stage, section: this.#section, header: false, number, ansiState: this.#nextLineAnsiState };
    this.#indexOfNumber.push(this.lines.length);
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
// Durations
// ---------------------------------------------------------------------------------------------

/** 3.2 s, 4 min 05 s, 2 h 07 min, 3 d 4 h: as the server writes durations (templatetags/times.py). */
export function formatDuration(totalSeconds) {
  if (totalSeconds < 60) return `${totalSeconds.toFixed(1)} s`;
  const rounded = Math.round(totalSeconds);
  const [minutes, seconds] = [Math.floor(rounded / 60), rounded % 60];
  if (minutes < 60) return `${minutes} min ${String(seconds).padStart(2, "0")} s`;
  const [hours, minutesLeft] = [Math.floor(minutes / 60), minutes % 60];
  if (hours < 48) return `${hours} h ${String(minutesLeft).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

// ---------------------------------------------------------------------------------------------
// Links to lines and search results
// ---------------------------------------------------------------------------------------------

/** The line number a #L<n> fragment names, or null. */
export function lineFromHash(hash) {
  const match = /^#L([1-9][0-9]*)$/.exec(hash ?? "");
  return match ? Number(match[1]) : null;
}

/**
 * The lines a search matched (line numbers, ascending, as the server found them in the stored
 * log) and which of them the reader is on. Moving past either end wraps around.
 */
export class SearchMatches {
  lines;
  truncated;
  current = -1;
  #set;

  constructor(lines = [], { truncated = false } = {}) {
    this.lines = lines;
    this.truncated = truncated;
    this.#set = new Set(lines);
  }

  get size() {
    return this.lines.length;
  }

  get currentLine() {
    return this.lines[this.current] ?? null;
  }

  has(number) {
    return this.#set.has(number);
  }

  /** Make the first match at or after line `number` current (the first of all when none is). */
  startAt(number) {
    if (this.size === 0) return null;
    const index = this.lines.findIndex((line) => line >= number);
    this.current = index === -1 ? 0 : index;
    return this.currentLine;
  }

  next() {
    if (this.size === 0) return null;
    this.current = (this.current + 1) % this.size;
    return this.currentLine;
  }

  previous() {
    if (this.size === 0) return null;
    this.current = (this.current - 1 + this.size) % this.size;
    return this.currentLine;
  }

  /** What the search box says: "3 of 12 · line 1234", or that nothing matched. */
  describe(query) {
    if (this.size === 0) return `No line contains “${query}”.`;
    const total = this.truncated ? `the first ${this.size}` : `${this.size}`;
    return `${this.current + 1} of ${total} · line ${this.currentLine}`;
  }
}

// ---------------------------------------------------------------------------------------------
// DOM: the virtualised view
// ---------------------------------------------------------------------------------------------

// What #folded holds for a stage (section null) or for one section of it.
function foldKey(stage, section = null) {
  return JSON.stringify(section === null ? [stage] : [stage, section]);
}

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
 *
 * A stage can be folded under its header, and a section of a stage (a test step) under its
 * own: the rows shown are then not the log's lines one for one, so the view keeps the list of
 * the lines it shows (`#shown`, indices into log.lines) and positions rows by their place in
 * that list. A folded section hides its lines under each of its headers, lines still to come
 * included; a folded stage hides everything below its header, section headers too.
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
  #rowsFirstPosition = 0;
  #renderedCount = 0;
  #framePending = false;
  #shown = [];
  #linesLookedAt = 0;
  #folded = new Set();
  // The #L<n> line, highlighted; and a line to bring into view once the log has it.
  #targetLine = null;
  #lineToScrollTo = null;
  // A scroll position to restore on the next render, once the spacer has its new height.
  #scrollTopToRestore = null;
  #matches = null;
  // Set once the view went to a line (a link, the error, a search): new output no longer pulls
  // it to the bottom, until the reader scrolls there. Scrolls the view makes itself are told
  // apart from the reader's by the position they left.
  #followingPaused = false;
  #scrollTopWeSet = null;

  constructor(container, log, requestFrame) {
    this.#container = container;
    this.#document = container.ownerDocument;
    this.#log = log;
    this.#requestFrame = requestFrame;
    this.#buildSkeleton();
    this.#lineHeight = this.#measureLineHeight();
    container.addEventListener("scroll", () => this.#onScroll(), { passive: true });
    container.addEventListener("click", (event) => {
      const toggle = event.target?.closest?.(".log-fold");
      if (!toggle) return;
      if (toggle.dataset.section === undefined) this.toggleStage(toggle.dataset.stage);
      else this.toggleSection(toggle.dataset.stage, toggle.dataset.section, Number(toggle.dataset.index));
    });
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

  /** Highlight line `number` and scroll it into view, now or as soon as it has arrived. */
  goToLine(number) {
    this.#targetLine = number;
    this.#lineToScrollTo = number;
    this.#followingPaused = true;
    this.#redrawRows();
  }

  /** Mark the lines a search matched and bring the current one into view. */
  showMatches(matches) {
    this.#matches = matches;
    if (matches.currentLine !== null) {
      this.#lineToScrollTo = matches.currentLine;
      this.#followingPaused = true;
    }
    this.#redrawRows();
  }

  /** Is the stage folded, or with a section ("" for the stage's own lines), that section? */
  isFolded(stage, section = null) {
    return this.#folded.has(foldKey(stage, section));
  }

  /** Fold a stage's lines under its header, or unfold them; the header stays where it was. */
  toggleStage(stage) {
    const header = this.#log.lines.findIndex((line) => line.header && line.section === null && line.stage === stage);
    this.#toggle(foldKey(stage), header);
  }

  /**
   * Fold a section's lines under its headers, or unfold them; the header at `headerIndex` (in
   * log.lines: the one clicked), else its first, stays where it was.
   */
  toggleSection(stage, section, headerIndex) {
    const isItsHeader = (line) => line?.header && line.stage === stage && line.section === section;
    const header = isItsHeader(this.#log.lines[headerIndex])
      ? headerIndex
      : this.#log.lines.findIndex(isItsHeader);
    this.#toggle(foldKey(stage, section), header);
  }

  #toggle(key, header) {
    if (header === -1) return;
    const offset = this.#positionOf(header) * this.#lineHeight - this.#container.scrollTop;
    if (this.#folded.has(key)) this.#folded.delete(key);
    else this.#folded.add(key);
    this.#reshow();
    this.#scrollTopToRestore = this.#positionOf(header) * this.#lineHeight - offset;
    this.#redrawRows();
  }

  /** The number of the first line of output at the top of the view (1 before any). */
  topLineNumber() {
    const first = Math.floor(this.#container.scrollTop / this.#lineHeight);
    for (let position = first; position < this.#shown.length; position++) {
      const number = this.#log.lines[this.#shown[position]].number;
      if (number !== null) return number;
    }
    return 1;
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

  #onScroll() {
    const byReader = this.#container.scrollTop !== this.#scrollTopWeSet;
    if (byReader && this.#isScrolledToBottom()) this.#followingPaused = false;
    this.scheduleRender();
  }

  #scrollTo(scrollTop) {
    this.#container.scrollTop = scrollTop;
    this.#scrollTopWeSet = this.#container.scrollTop;
  }

  #render() {
    const container = this.#container;
    this.#showNewLines();
    // Follow mode: decided before the spacer grows, from where the reader left the scrollbar.
    const following =
      !this.#followingPaused && this.#scrollTopToRestore === null && this.#isScrolledToBottom();
    this.#spacer.style.height = `${this.#shown.length * this.#lineHeight}px`;
    if (this.#scrollTopToRestore !== null) {
      this.#scrollTo(this.#scrollTopToRestore);
      this.#scrollTopToRestore = null;
    }
    this.#scrollToWantedLine();
    if (following) this.#scrollTo(container.scrollHeight);

    const firstVisible = Math.floor(container.scrollTop / this.#lineHeight);
    const lastVisible = Math.ceil((container.scrollTop + container.clientHeight) / this.#lineHeight);
    const first = Math.max(0, firstVisible - OVERSCAN_LINES);
    const end = Math.min(this.#shown.length, lastVisible + OVERSCAN_LINES);
    this.#renderRows(first, end);
    this.#rows.style.transform = `translateY(${first * this.#lineHeight}px)`;
    this.#renderedCount = this.#shown.length;
    // Once more: a long line just drawn can bring in the horizontal scrollbar, which takes its
    // height off the viewport and would leave the newest line hidden behind it.
    if (following) this.#scrollTo(container.scrollHeight);
  }

  // Centres the wanted line once the log has it, unfolding its stage and section if need be.
  #scrollToWantedLine() {
    if (this.#lineToScrollTo === null) return;
    const index = this.#log.indexOfNumber(this.#lineToScrollTo);
    if (index === undefined) return;
    const { stage, section } = this.#log.lines[index];
    const stageFolded = this.#folded.delete(foldKey(stage));
    const sectionFolded = this.#folded.delete(foldKey(stage, section));
    if (stageFolded || sectionFolded) {
      this.#reshow();
      this.#spacer.style.height = `${this.#shown.length * this.#lineHeight}px`;
    }
    const middle = (this.#container.clientHeight - this.#lineHeight) / 2;
    this.#scrollTo(Math.max(0, this.#positionOf(index) * this.#lineHeight - middle));
    this.#lineToScrollTo = null;
  }

  #isScrolledToBottom() {
    const container = this.#container;
    const distance = container.scrollHeight - container.scrollTop - container.clientHeight;
    // Half a line of slack: zoomed pages scroll in fractional pixels and never quite reach 0.
    return distance <= this.#lineHeight / 2;
  }

  // Lines only ever get added, so the lines shown grow at the end, unless a fold changes.
  #showNewLines() {
    const lines = this.#log.lines;
    for (; this.#linesLookedAt < lines.length; this.#linesLookedAt++) {
      if (this.#isShown(lines[this.#linesLookedAt])) this.#shown.push(this.#linesLookedAt);
    }
  }

  #isShown(line) {
    if (line.header && line.section === null) return true;
    if (this.#folded.has(foldKey(line.stage))) return false;
    return line.header || !this.#folded.has(foldKey(line.stage, line.section));
  }

  #reshow() {
    this.#shown = [];
    this.#linesLookedAt = 0;
    this.#showNewLines();
  }

  // The place among the rows shown of line `index` (which is shown): a binary search.
  #positionOf(index) {
    let low = 0;
    let high = this.#shown.length - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.#shown[middle] < index) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  // Rows change their look (highlight, fold): drop them all and draw afresh.
  #redrawRows() {
    for (const row of this.#rowElements) row.remove();
    this.#rowElements = [];
    this.scheduleRender();
  }

  // Keeps the rows still in range and unchanged, and builds only the new ones: less work per
  // frame, and a text selection in the log survives new output arriving below it.
  #renderRows(first, end) {
    const oldFirst = this.#rowsFirstPosition;
    const oldEnd = oldFirst + this.#rowElements.length;
    // The row that was last at the previous render may have grown or been overwritten since.
    const keepFirst = Math.max(first, oldFirst);
    const keepEnd = Math.min(end, oldEnd, this.#renderedCount - 1);
    const kept = [];
    this.#rowElements.forEach((row, offset) => {
      const position = oldFirst + offset;
      if (position >= keepFirst && position < keepEnd) kept.push(row);
      else row.remove();
    });
    const above = kept.length ? this.#buildRows(first, keepFirst) : [];
    const below = kept.length ? this.#buildRows(keepEnd, end) : this.#buildRows(first, end);
    this.#rows.prepend(...above);
    this.#rows.append(...below);
    this.#rowElements = [...above, ...kept, ...below];
    this.#rowsFirstPosition = first;
  }

  #buildRows(first, end) {
    const rows = [];
    for (let position = first; position < end; position++) {
      const index = this.#shown[position];
      rows.push(this.#buildRow(this.#log.lines[index], index));
    }
    return rows;
  }

  #buildRow(line, index) {
    const document = this.#document;
    const row = document.createElement("div");
    row.className = this.#rowClasses(line).join(" ");
    // Lets the page mark each line with its stage and section in CSS, e.g. [data-stage]::before.
    row.dataset.stage = line.stage ?? "";
    if (line.section !== null && line.section !== undefined) row.dataset.section = line.section;
    row.style.height = `${this.#lineHeight}px`;
    if (line.header) {
      row.append(this.#foldToggle(line, index));
    } else {
      row.dataset.line = String(line.number);
      const number = document.createElement("a");
      number.className = "log-number";
      number.href = `#L${line.number}`;
      number.textContent = String(line.number);
      row.append(number);
    }
    const text = document.createElement("span");
    text.className = "log-text";
    for (const segment of parseAnsi(line.text, line.ansiState)) text.append(this.#segmentNode(segment));
    row.append(text);
    return row;
  }

  #rowClasses(line) {
    const classes = ["log-line"];
    if (line.header) classes.push(line.section === null ? "log-stage" : "log-section");
    if (line.number === null) return classes;
    if (line.number === this.#targetLine) classes.push("log-line-target");
    if (this.#matches?.has(line.number)) classes.push("log-line-match");
    if (line.number === this.#matches?.currentLine) classes.push("log-line-current");
    return classes;
  }

  #foldToggle(header, index) {
    const { stage, section } = header;
    const folded = this.#folded.has(foldKey(stage, section));
    const toggle = this.#document.createElement("button");
    toggle.type = "button";
    toggle.className = "log-fold";
    toggle.dataset.stage = stage;
    let what = `the ${stage} stage`;
    if (section !== null) {
      toggle.dataset.section = section;
      toggle.dataset.index = String(index);
      what = section === "" ? `the ${stage} stage's own lines` : `${section} of the ${stage} stage`;
    }
    toggle.setAttribute("aria-expanded", String(!folded));
    toggle.setAttribute("aria-label", `${folded ? "Unfold" : "Fold"} ${what}`);
    toggle.textContent = folded ? "▸" : "▾";
    return toggle;
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

// The failure banner is the server's to draw: the page loads again once the run has ended.
function showRunStatus(document, run) {
  showStatus(document.getElementById("run-status"), run.status);
  for (const stage of run.stages ?? []) showStageStatus(document, stage);
}

function showStageStatus(document, stage) {
  // Matched through dataset rather than a [data-stage="..."] selector, which a stage name
  // containing a quote would break.
  const item = [...document.querySelectorAll("li[data-stage]")].find((li) => li.dataset.stage === stage.name);
  if (!item) return;
  item.className = `stage stage-${stage.status}`;
  showStatus(item.querySelector(".status"), stage.status);
  const duration = item.querySelector(".duration");
  if (duration && stage.duration !== null && stage.duration !== undefined) {
    duration.textContent = formatDuration(Number(stage.duration));
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

// ---------------------------------------------------------------------------------------------
// The search box
// ---------------------------------------------------------------------------------------------

// Enter finds, or moves to the next match once found; Shift+Enter and the arrows move back and
// forth. The status says where the reader is among the matches.
function bindSearchForm(form, { search, step }) {
  const input = form.elements.q;
  const status = form.elements.status;
  let searched = null;
  let matches = null;
  const say = (text) => {
    if (status) status.value = text;
  };
  const move = (direction) => {
    if (!matches) return;
    step(direction);
    say(matches.describe(searched));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = input.value;
    if (query === "") return;
    if (query === searched && matches) {
      move(1);
      return;
    }
    say("Searching…");
    try {
      matches = await search(query);
      searched = query;
      say(matches.describe(query));
    } catch (error) {
      say(`The search failed: ${error.message}`);
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.shiftKey) {
      event.preventDefault();
      move(-1);
    }
  });
  for (const button of form.querySelectorAll("[data-search-step]")) {
    button.addEventListener("click", () => move(Number(button.dataset.searchStep)));
  }
}

// ---------------------------------------------------------------------------------------------
// The run page
// ---------------------------------------------------------------------------------------------

/**
 * Stream the run's log into `element` (the #run-log div) and keep the status elements current.
 *
 * The element says where the socket is (data-ws-url), where to search (data-search-url) and,
 * for a failed run, the line where it went wrong (data-error-line): the view opens there unless
 * the address names a line of its own (#L1234).
 *
 * Returns {log, stop, goToLine, toggleStage, toggleSection, isFolded, search, step}: the
 * LogLines being shown, a function that closes the socket for good, and what the page's links,
 * fold buttons and search box call.
 * `onStatus(run)` is called with every status message, after the page's badges are updated.
 */
export function startRunLog(
  element,
  {
    WebSocketImpl = WebSocket,
    location = window.location,
    requestFrame = (callback) => requestAnimationFrame(callback),
    fetchImpl = (...args) => fetch(...args),
    windowImpl = globalThis.window,
    onStatus = () => {},
  } = {},
) {
  const document = element.ownerDocument;
  const log = new LogLines({ lastSeq: Number(element.dataset.after) || 0 });
  const view = new VirtualLogView(element, log, requestFrame);
  // Seeded from the page so that opening an already finished run reads its log once and then
  // leaves the socket closed, even if the server sends no status message.
  let runStatus = document.getElementById("run-status")?.textContent.trim();

  const linkedLine = lineFromHash(location.hash);
  const openingLine = linkedLine ?? (Number(element.dataset.errorLine) || null);
  if (openingLine !== null) view.goToLine(openingLine);
  // Followed to a line, the reader wants the log on screen; a failed run's own page keeps its
  // banner in sight instead.
  if (linkedLine !== null) element.scrollIntoView?.({ block: "nearest" });

  const handleMessage = (message) => {
    if (message.type === "log") {
      if (log.append(message.seq, message.stage, message.text, message.section ?? "")) view.scheduleRender();
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

  let matches = null;
  const search = async (query) => {
    const url = new URL(element.dataset.searchUrl, `${location.protocol}//${location.host}`);
    url.searchParams.set("q", query);
    const response = await fetchImpl(url.href, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const found = await response.json();
    matches = new SearchMatches(found.matches.map((match) => match.line), { truncated: found.truncated });
    matches.startAt(view.topLineNumber());
    showMatches();
    return matches;
  };
  const step = (direction) => {
    if (!matches) return null;
    if (direction < 0) matches.previous();
    else matches.next();
    showMatches();
    return matches.currentLine;
  };
  const showMatches = () => {
    view.showMatches(matches);
    element.scrollIntoView?.({ block: "nearest" });
  };

  const searchForm = document.getElementById("log-search");
  if (searchForm) bindSearchForm(searchForm, { search, step });
  if (windowImpl) followLineLinks(windowImpl, document, location, view, element);

  return {
    log,
    stop: () => socket.stop(),
    goToLine: (number) => view.goToLine(number),
    toggleStage: (stage) => view.toggleStage(stage),
    toggleSection: (stage, section) => view.toggleSection(stage, section),
    isFolded: (stage, section = null) => view.isFolded(stage, section),
    search,
    step,
  };
}

// A #L<n> address, from a line number, the failure banner or the browser's back button, shows
// its line. Following a link to the line already in the address changes nothing the browser
// would notice, so that one is taken here.
function followLineLinks(window, document, location, view, logElement) {
  const goTo = (number) => {
    view.goToLine(number);
    logElement.scrollIntoView({ block: "nearest" });
  };
  window.addEventListener("hashchange", () => {
    const number = lineFromHash(location.hash);
    if (number !== null) goTo(number);
  });
  document.addEventListener("click", (event) => {
    const link = event.target?.closest?.("a[href^='#L']");
    if (!link || link.hash !== location.hash) return;
    const number = lineFromHash(link.hash);
    if (number === null) return;
    event.preventDefault();
    goTo(number);
  });
}
