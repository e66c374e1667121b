// docqa's web page. Every text that comes from a PDF or from the model is put into the page as text
// (textContent, append), never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("docqa-token") || "",
  documents: [],          // from GET /api/documents
  chosen: new Set(),      // names the questions are limited to (empty: all)
  lost: [],               // chosen documents since deleted (by a colleague): said, and no question asks all instead
  answer: null,           // the last answer object
  shownSources: null,     // the sources on screen, as JSON: those of the answer coming, before its end
  controller: null,       // aborts the question being answered
  viewer: null,           // {document, page, pages, highlight, highlightPage, shown, pointsWide, scale}
  zoom: null,             // the page viewer's zoom (1: 100 %), kept from page to page; null: the page's width fitted
  eachRows: [],           // [{document, answer, page}]
  eachQuestion: "",       // the question those rows answer
  seenBuilds: new Map(),  // build id → state last shown
  buildsSeen: false,      // whether the builds were looked at once: those seen then are no news
  dismissed: new Set(),   // finished builds the user put away
  link: "",               // the hash of the question on screen ("#q=...&doc=...")
};

// ------------------------------------------------------------------ helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children); // strings become text nodes
  return node;
}

function documentPath(name) {
  return name.split("/").map(encodeURIComponent).join("/");
}

// What a request that never reached the server says (the browser's own words were "Failed to fetch")
const UNREACHABLE = "Cannot reach the docqa server: it may have stopped, or the network is down.";

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", "Bearer " + state.token);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(UNREACHABLE);
  }
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error(state.token ? "the API token was refused: enter the right one at the top of the page"
                                : "this server needs an API token: enter it at the top of the page");
  }
  return response;
}

async function errorOf(response) {
  const body = await response.json().catch(() => ({}));
  return new Error(body.error || `${response.status} ${response.statusText}`);
}

async function getJSON(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// Server-Sent Events from a fetch response (EventSource cannot POST).
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield [kind, JSON.parse(data)];
    }
  }
}

// One question through POST /api/ask; resolves to the answer object.
async function askServer(question, { doc, retrievalOnly, signal, onToken, onQueued, onStarted = () => {},
                                    onSources = () => {} }) {
  const response = await api("/api/ask", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ question, doc: doc && doc.length ? doc : null, retrieval_only: retrievalOnly }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  for await (const [kind, data] of serverEvents(response)) {
    if (kind === "queued") onQueued(data);
    else if (kind === "started") onStarted();
    else if (kind === "sources") onSources(data);
    else if (kind === "token") onToken(data.text);
    else if (kind === "answer") return data;
    else if (kind === "error") throw new Error(data.error);
  }
  throw new Error("the answer stopped before it was complete");
}

function setStatus(text) {
  $("status").textContent = text;
}

// Said once, politely, to a screen reader (#announcer): what the page shows without a word of its own (an answer
// complete, a page turned, a build finished). The same words again are told apart by a no-break space: a live
// region whose text does not change says nothing.
function announce(text) {
  const region = $("announcer");
  region.textContent = region.textContent === text ? text + "\u00a0" : text;
}

// What a look in the background found wrong: it does not take the place of what the user's own action said (the
// server's "shutting down" became "Cannot reach the docqa server" a moment later)
function setBackgroundStatus(text) {
  const shown = $("status").textContent;
  if (!shown || shown === UNREACHABLE || text !== UNREACHABLE) setStatus(text);
}

function seconds(value) {
  return value == null ? "" : `${value.toFixed(1)} s`;
}

// ------------------------------------------------------------------ asking

function scope() {
  return [...state.chosen];
}

function startQuestion() {
  if (state.controller) state.controller.abort();
  state.controller = new AbortController();
  $("stop").hidden = false;
  return state.controller.signal;
}

function endQuestion() {
  state.controller = null;
  // Stop, hidden now, had the keyboard: it goes to the question box rather than to the page's top
  if (document.activeElement === $("stop")) $("question").focus();
  $("stop").hidden = true;
}

async function ask(event, { fromLink = false } = {}) {
  if (event) event.preventDefault();
  const question = $("question").value.trim();
  if (!question || scopeGone()) return;
  const signal = startQuestion();
  // Copy takes the answer on screen, once it is complete: never the question before's (a stopped or failed one)
  state.answer = null;
  $("copy").disabled = true;
  $("each").hidden = true;
  closeViewer(); // the page beside the answer was the question before's
  const answerBox = $("answer");
  answerBox.textContent = "";
  answerBox.classList.remove("passages", "no-answer");
  for (const id of ["sources", "timings", "notes", "searched"]) $(id).textContent = "";
  state.shownSources = null;
  $("result").hidden = false;
  state.link = linkTo(question);
  $("permalink").href = state.link;
  // The address bar follows the question on screen: a reload asks it again, back and forward go through them
  if (location.hash !== state.link) history[fromLink ? "replaceState" : "pushState"](null, "", state.link);
  setStatus("Searching the documents…");
  let started = false;
  try {
    const answer = await askServer(question, {
      doc: scope(),
      retrievalOnly: $("retrieval-only").checked,
      signal,
      onQueued: (data) => setStatus(`Waiting for the model: place ${data.place} in line`),
      onStarted: () => setStatus("The model is reading the passages…"),
      // The passages, before the model has read them: on a CPU the first token is seconds away, and an analyst
      // can open a cited page meanwhile
      onSources: (found) => {
        showFound(found);
        const count = found.sources.length;
        setStatus(`The model is reading the ${count} passage${count === 1 ? "" : "s"} found…`);
      },
      onToken: (text) => {
        if (!started) setStatus("Answering…");
        started = true;
        answerBox.append(text);
      },
    });
    showAnswer(answer);
    setStatus("");
    announce(answerReady(answer)); // once the answer is whole: never token by token
  } catch (error) {
    if (error.name === "AbortError") setStatus("Stopped.");
    else setStatus(error.message);
    // an empty card under the reason said nothing more; the passages of an answer stopped part way stay
    if (!state.shownSources) $("result").hidden = true;
  } finally {
    if (state.controller && state.controller.signal === signal) endQuestion();
    refreshHealth();
  }
}

function showAnswer(answer) {
  state.answer = answer;
  $("copy").disabled = false;
  const answerBox = $("answer");
  if (answer.answer === null) {
    answerBox.textContent = answer.sources.length ? "The passages that best match the question:" : "Nothing found.";
    answerBox.classList.add("passages");
  } else {
    answerBox.textContent = answer.answer;
    if (answer.answered === false) answerBox.classList.add("no-answer");
  }
  showFound(answer);
  const t = answer.timings;
  $("timings").textContent = [
    t.retrieval != null ? `retrieval ${seconds(t.retrieval)}` : "",
    t.first_token != null ? `first token ${seconds(t.first_token)}` : "",
    t.tokens_per_second ? `${t.tokens_per_second} tokens/s` : "",
    t.total != null ? `total ${seconds(t.total)}` : "",
  ].filter(Boolean).join(" · ");
}

// The notes, the documents searched and the sources of an answer, whole or still to come. The sources already on
// screen are kept as they are (the card open in the viewer, the keyboard on a card) where the answer's end brings
// the same ones.
function showFound(found) {
  $("notes").textContent = "";
  for (const note of found.notes || []) $("notes").append(el("li", { text: note }));
  $("searched").textContent = found.searched ? searchedText(found.searched) : "";
  const sources = JSON.stringify(found.sources);
  if (sources === state.shownSources) return;
  state.shownSources = sources;
  renderSources(found.sources);
}

function answerReady(answer) {
  const count = answer.sources.length;
  if (answer.answer === null) return count ? `${count} passage${count === 1 ? "" : "s"} found.` : "Nothing found.";
  return `Answer ready, ${count} source${count === 1 ? "" : "s"}.`;
}

function renderSources(sources) {
  const list = $("sources");
  list.textContent = "";
  sources.forEach((source, index) => {
    // A button (Enter and Space), named by its citation: every card was "Show this page" to a screen reader
    const button = el("button", { type: "button", class: "open card-head",
                                  "aria-label": `[${index + 1}] ${source.document}, page ${source.page_number}` },
      el("span", { class: "badge", text: `[${index + 1}]` }),
      el("span", { class: "doc", text: source.document }),
      el("span", { class: "muted", text: `page ${source.page_number}` }));
    const card = el("li", { class: "card", title: "Show this page" },
      button, el("p", { class: "passage", text: source.text }));
    card.addEventListener("click", () => { // the whole card takes a click; the button's comes here too
      for (const other of list.children) {
        other.classList.remove("active");
        other.querySelector(".open").removeAttribute("aria-current");
      }
      card.classList.add("active");
      button.setAttribute("aria-current", "true");
      openPage(source.document, source.page_number, source.text, button);
    });
    list.append(card);
  });
}

// Which documents the search covered, as the command line's "Searched:" line says it
function searchedText(searched) {
  const docs = searched.documents;
  const count = `${docs.length} document${docs.length === 1 ? "" : "s"}`;
  const names = docs.join(", ");
  // what the question names that no passage found mentions: they are about something else
  const unmentioned = searched.unmentioned || [];
  const lacking = unmentioned.length
    ? ` (no passage found mentions ${unmentioned.join(" or ")}, which the question names)`
    : "";
  // what the question asks of a named company that none of its filings is ("no Best Buy filing reports 2019")
  const unmet = searched.unmet || [];
  const without = unmet.length ? ` (${unmet.join("; ")})` : "";
  return scopeText(searched, count, names) + without + lacking;
}

function scopeText(searched, count, names) {
  const docs = searched.documents;
  if (searched.scope === "doc") return `Searched the ${count} chosen: ${names}`;
  if (searched.scope === "named") return `Searched the ${count} named in the question: ${names}`;
  if (searched.scope === "period") return `Searched the ${count} whose period ends on the date in the question: ${names}`;
  const every = docs.length === 1 ? "Searched the only document" : `Searched all ${count}`;
  return searched.named && searched.named.length
    ? `${every} (the question names ${searched.named.join(", ")}, but no passage there matched it nearly as well as passages elsewhere)`
    : every;
}

// A link that asks this question again, of the same documents, in the same mode
function linkTo(question) {
  const params = new URLSearchParams({ q: question });
  for (const name of scope()) params.append("doc", name);
  if ($("retrieval-only").checked) params.set("passages", "1");
  return "#" + params.toString();
}

async function followLink() {
  if (location.hash === state.link) return; // the link to the question on screen: nothing to ask again
  const params = new URLSearchParams(location.hash.slice(1));
  const question = params.get("q");
  if (!question) return;
  const names = new Set(state.documents.map((d) => d.name));
  const linked = params.getAll("doc");
  const missing = linked.filter((name) => !names.has(name));
  state.chosen = new Set(linked.filter((name) => names.has(name)));
  $("retrieval-only").checked = params.get("passages") === "1";
  renderDocuments();
  $("question").value = question;
  if (linked.length && !state.chosen.size) { // asking every document instead is not what the link asks
    setStatus(`The linked document${missing.length === 1 ? " is" : "s are"} not indexed here: ${missing.join(", ")}`);
    return;
  }
  await ask(null, { fromLink: true });
  if (missing.length) setStatus(`Not indexed here, so not searched: ${missing.join(", ")}`);
}

function citationText(answer) {
  const cite = (s, i) => `[${i + 1}] ${s.document}, page ${s.page_number}`;
  if (answer.answer == null) { // passages only: the passages themselves are what was found
    return `${answer.question}\n\nPassages:\n${answer.sources.map((s, i) => `${cite(s, i)}\n${s.text}`).join("\n\n")}\n`;
  }
  return `${answer.question}\n\n${answer.answer}\n\nSources:\n${answer.sources.map(cite).join("\n")}\n`;
}

async function copyAnswer() {
  if (!state.answer) return;
  const text = citationText(state.answer);
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el("textarea", {}, text); // not a secure context: the old way
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  setStatus("Copied the answer with its sources.");
}

// ------------------------------------------------------------------ ask every document

async function askEach() {
  const question = $("question").value.trim();
  if (!question || scopeGone()) return;
  const names = state.chosen.size ? scope() : state.documents.map((d) => d.name);
  if (!names.length) { setStatus("No documents to ask."); return; }
  const signal = startQuestion();
  // The answer panel of the question before, with its copy button and link, would read as this table's
  state.answer = null;
  $("result").hidden = true;
  closeViewer();
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
  const body = $("each-rows");
  body.textContent = "";
  state.eachRows = [];
  state.eachQuestion = question;
  $("each-heading").textContent = state.chosen.size ? `Chosen documents (${names.length})` : "Every document";
  $("each").hidden = false;
  try {
    for (const [index, name] of names.entries()) {
      const answerCell = el("td", { text: "…" });
      const pageCell = el("td");
      const notesCell = el("td", { class: "muted" });
      body.append(el("tr", {}, el("td", { text: name }), answerCell, pageCell, notesCell));
      setStatus(`Document ${index + 1} of ${names.length}: ${name}`);
      let text = "";
      try {
        const answer = await askServer(question, {
          doc: [name], retrievalOnly: $("retrieval-only").checked, signal,
          onQueued: (data) => setStatus(`Document ${index + 1} of ${names.length}: waiting for the model, place ${data.place}`),
          onStarted: () => setStatus(`Document ${index + 1} of ${names.length}: the model is reading the passages…`),
          onToken: (piece) => {
            if (!text) setStatus(`Document ${index + 1} of ${names.length}: answering…`);
            text += piece;
            answerCell.textContent = text;
          },
        });
        const top = answer.sources[0];
        // passages only: the best passage's start, as the command line's table gives it (a whole passage made a
        // row of thirty lines on a phone)
        const shown = answer.answer ?? (top ? cut(top.text, PASSAGE_CHARS) : "");
        // each answer's notes (the demo model, the index being updated, what no passage mentions) were dropped
        const notes = answer.notes.join("; ");
        answerCell.textContent = shown;
        notesCell.textContent = notes;
        if (top) pageCell.append(pageButton(name, top));
        state.eachRows.push({ document: name, answer: shown, page: top ? top.page_number : "", notes });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        answerCell.textContent = `error: ${error.message}`;
        state.eachRows.push({ document: name, answer: `error: ${error.message}`, page: "", notes: "" });
      }
    }
    setStatus("");
    announce(`Answers ready from ${names.length} document${names.length === 1 ? "" : "s"}.`);
  } catch (error) {
    setStatus(error.name === "AbortError" ? "Stopped." : error.message);
  } finally {
    if (state.controller && state.controller.signal === signal) endQuestion();
    refreshHealth();
  }
}

const PASSAGE_CHARS = 300; // docqa.batch.each_doc's: the top passage shown in a cell when there is no answer

function cut(text, limit) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > limit ? flat.slice(0, limit - 1).trimEnd() + "…" : flat;
}

// The cited page of a row: a button, which the keyboard reaches (a cell with a click handler was for the mouse only)
function pageButton(name, top) {
  const button = el("button", { type: "button", class: "page-link", text: String(top.page_number),
                                "aria-label": `Show page ${top.page_number} of ${name}` });
  button.addEventListener("click", () => openPage(name, top.page_number, top.text, button));
  return button;
}

function csvCell(value) {
  let text = String(value ?? "");
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text; // a spreadsheet must not run a cell as a formula
  return `"${text.replace(/"/g, '""')}"`;
}

function downloadCSV() {
  // The question in every row and in the file's name, so that tables downloaded one after another can be told
  // apart; a byte-order mark, without which Excel reads UTF-8 as its own code page ("Companyâ€™s").
  const question = state.eachQuestion;
  const lines = [["question", "document", "answer", "page", "notes"],
                 ...state.eachRows.map((r) => [question, r.document, r.answer, r.page, r.notes])];
  const text = "\ufeff" + lines.map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
  const slug = question.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60) || "answers";
  const blob = new Blob([text], { type: "text/csv;charset=utf-8" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `docqa-${slug}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// ------------------------------------------------------------------ page viewer

// opener: the button the page was opened with, where the keyboard goes back when the viewer closes
async function openPage(name, page, highlight, opener) {
  const doc = state.documents.find((d) => d.name === name);
  state.viewer = { document: name, page, pages: doc ? doc.pages : page, highlight, highlightPage: page, opener };
  $("viewer").hidden = false;
  document.body.classList.add("viewing");
  if (matchMedia("(max-width: 900px)").matches) $("viewer").scrollIntoView({ block: "start" }); // one column
  await showPage();
}

// Zoom as PDF viewers count it: 100 % is the page at its printed size, a point 1/72 inch
const CSS_PIXELS_PER_POINT = 96 / 72;
const ZOOM_STEPS = [0.5, 0.67, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 1.75, 2, 2.5, 3];
const LETTER_POINTS = 612; // the width of a page not yet seen: US Letter (an A4 page is 595)
// The server's limits on the image's pixels per point, `scale`. 1.5, its default, is also the least asked for: the
// page fitted to a laptop's viewer stays as sharp as it was. At 300 % (4 pixels per point) a pixel of the image is
// a pixel of an ordinary screen, and still a CSS pixel on a screen of two pixels to one: further would only blur it.
const MIN_RENDER_SCALE = 1.5;
const MAX_RENDER_SCALE = 4;

function zoomLevel(v) {
  if (state.zoom) return state.zoom;
  return $("page-frame").clientWidth / ((v.pointsWide || LETTER_POINTS) * CSS_PIXELS_PER_POINT);
}

// The pixels per point that draw the page sharp at its zoom on this screen, in half steps up (a small change of
// zoom, or of the window's width, takes the image already drawn), within the server's limits
function renderScale(v) {
  const wanted = zoomLevel(v) * CSS_PIXELS_PER_POINT * (window.devicePixelRatio || 1);
  return Math.min(MAX_RENDER_SCALE, Math.max(MIN_RENDER_SCALE, Math.ceil(wanted * 2) / 2));
}

function zoomText(v) {
  return `${Math.round(zoomLevel(v) * 100)} %`;
}

// The image's width on screen; the stylesheet's 100 % while the page's width is fitted. (A property set through
// the DOM, not a style attribute: the Content-Security-Policy allows no inline style.)
function sizeImage(v) {
  const image = $("page-image");
  image.style.width = state.zoom && v.pointsWide ? `${Math.round(v.pointsWide * CSS_PIXELS_PER_POINT * state.zoom)}px` : "";
}

function showZoom(v) {
  const level = zoomLevel(v);
  $("zoom-level").textContent = zoomText(v);
  const focused = document.activeElement;
  $("zoom-in").disabled = !ZOOM_STEPS.some((step) => step > level * 1.001);
  $("zoom-out").disabled = !ZOOM_STEPS.some((step) => step < level / 1.001);
  $("fit-width").setAttribute("aria-pressed", String(!state.zoom));
  // A button disabled at the last step lost the keyboard to the page's top; the page it zoomed keeps it
  if (focused && focused.disabled) $("page-frame").focus({ preventScroll: true });
}

// Zoom in (+1) or out (-1) to the next step from the zoom on screen, a fitted width's too
function zoomStep(direction) {
  const v = state.viewer;
  if (!v) return;
  const level = zoomLevel(v);
  const next = direction > 0 ? ZOOM_STEPS.find((step) => step > level * 1.001)
                             : [...ZOOM_STEPS].reverse().find((step) => step < level / 1.001);
  if (next) zoomTo(next);
}

// level: the zoom, or null to fit the page's width. The point of the page at the middle of the box stays there.
function zoomTo(level) {
  const v = state.viewer;
  if (!v || level === state.zoom) return;
  const frame = $("page-frame");
  const across = (frame.scrollLeft + frame.clientWidth / 2) / frame.scrollWidth;
  const down = (frame.scrollTop + frame.clientHeight / 2) / frame.scrollHeight;
  state.zoom = level;
  sizeImage(v);
  frame.scrollLeft = across * frame.scrollWidth - frame.clientWidth / 2;
  frame.scrollTop = down * frame.scrollHeight - frame.clientHeight / 2;
  showZoom(v);
  announce(`Zoom ${zoomText(v)}${level ? "" : ", the page's width"}`);
  sharpen();
}

// The page drawn again where the zoom on screen wants more pixels than its image has: never a blurred enlargement
function sharpen() {
  const v = state.viewer;
  if (v && v.shown === v.page && renderScale(v) > v.scale) showPage();
}

let sharpenTimer = null;

function viewerResized() {
  const v = state.viewer;
  if (!v || state.zoom) return; // a zoom's width in pixels does not follow the box: the box scrolls
  showZoom(v); // the fitted width's percentage
  clearTimeout(sharpenTimer);
  sharpenTimer = setTimeout(sharpen, 300); // once the window has its size, not at every step of a drag
}

// An image's width in pixels, from its PNG header (the server sends only PNG): the image is given its width on screen
// before it is shown, so the page does not jump from one size to the other
async function pngWidth(blob) {
  return new DataView(await blob.slice(16, 20).arrayBuffer()).getUint32(0);
}

function labelPage(v, text) {
  $("page-label").textContent = `${v.document} — ${text}`;
  $("prev").disabled = v.page <= 1;
  $("next").disabled = v.page >= v.pages;
}

let pageCalls = 0; // the latest showPage call's number: an earlier one's late response is not shown

async function showPage() {
  // The label names the page whose image is shown, and changes only once the new image has come: a page that
  // failed to load left the label on it over the image of the page before, which an analyst would cite.
  // A page turned to, or the page on screen drawn again sharper for its zoom (said and labelled as it was)
  const v = state.viewer;
  const page = v.page;
  const call = ++pageCalls;
  const turning = page !== v.shown;
  if (turning) labelPage(v, `loading page ${page} of ${v.pages}…`);
  const scale = renderScale(v);
  // The passage in the request's body: in the address, a proxy's access log kept the text of the report
  const highlight = page === v.highlightPage && v.highlight ? v.highlight : null;
  const url = `/api/documents/${documentPath(v.document)}/pages/${page}.png`;
  const image = $("page-image");
  if (turning) image.classList.add("loading");
  try {
    const response = await api(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ highlight, scale }),
    });
    if (!response.ok) throw await errorOf(response);
    const blob = await response.blob();
    const marked = response.headers.get("x-docqa-marked");
    const width = await pngWidth(blob);
    if (call !== pageCalls) return; // the reader has turned on meanwhile: the later call shows its page
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    v.pointsWide = width / scale;
    v.scale = scale;
    sizeImage(v);
    image.src = URL.createObjectURL(blob);
    image.alt = `${v.document}, page ${page}`;
    v.shown = page;
    labelPage(v, `page ${page} of ${v.pages}`);
    showZoom(v);
    if (turning) {
      announce(`${v.document}, page ${page} of ${v.pages}`); // the page opened or turned to, said once it is shown
      await image.decode().catch(() => {}); // laid out at its size, so that a place on it can be scrolled to
      if (call !== pageCalls) return;
      bringIntoView(marked);
    }
    sharpen(); // a page narrower than the width guessed for it, fitted: more pixels
  } catch (error) {
    if (call !== pageCalls) return;
    if (!turning) { // the page stays, as sharp as it was
      setStatus(`Page ${page} of ${v.document} cannot be drawn sharper: ${error.message}`);
      return;
    }
    setStatus(`Page ${page} of ${v.document} cannot be shown: ${error.message}`);
    if (v.shown) {
      v.page = v.shown;
      labelPage(v, `page ${v.shown} of ${v.pages}`);
    } else { // nothing of this document shown yet: no image of another one under its name
      if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
      image.removeAttribute("src");
      image.alt = "";
      labelPage(v, `page ${page} cannot be shown`);
    }
  } finally {
    if (call === pageCalls) image.classList.remove("loading");
  }
}

// A page shown: the passage marked on it ("left,top,right,bottom" as fractions of the image, from the server) a
// quarter of the box below its top, and its start in view across a zoomed page; without one, the page's top. A
// passage low on a long page, or on a zoomed one, was marked out of sight.
function bringIntoView(marked) {
  const frame = $("page-frame");
  const image = $("page-image");
  const [left, top] = marked ? marked.split(",").map(Number) : [0, 0];
  frame.scrollTop = top * image.clientHeight - (marked ? frame.clientHeight / 4 : 0);
  frame.scrollLeft = left * image.clientWidth - (marked ? frame.clientWidth / 8 : 0);
}

function turnPage(step) {
  const v = state.viewer;
  if (!v) return;
  const page = v.page + step;
  if (page < 1 || page > v.pages) return;
  v.page = page;
  showPage();
}

function closeViewer() {
  $("viewer").hidden = true;
  document.body.classList.remove("viewing");
  state.viewer = null;
}

// The reader's close (× or Escape): the keyboard, in the viewer or nowhere, goes back to the card or table row the
// page was opened from; hidden with the viewer, it was lost to the page's top
function closeViewerByUser() {
  const opener = state.viewer && state.viewer.opener;
  const focused = document.activeElement;
  const lost = !focused || focused === document.body || $("viewer").contains(focused);
  closeViewer();
  if (lost && opener && opener.isConnected) opener.focus();
}

// ------------------------------------------------------------------ documents

function describeDocument(doc) {
  const parts = [`${doc.pages} page${doc.pages === 1 ? "" : "s"}`];
  if (doc.company) parts.push(doc.company);
  if (doc.form) parts.push(doc.form);
  if (doc.years && doc.years.length) parts.push(doc.years.join(", ") + (doc.quarter ? ` Q${doc.quarter}` : ""));
  return parts.join(" · ");
}

function renderDocuments() {
  const filter = $("doc-filter").value.trim().toLowerCase();
  const list = $("documents");
  const kept = focusedDocument(list);
  list.textContent = "";
  for (const doc of state.documents) {
    if (filter && !doc.name.toLowerCase().includes(filter)) continue;
    const box = el("input", { type: "checkbox", "aria-label": `Ask only ${doc.name}` });
    box.checked = state.chosen.has(doc.name);
    box.addEventListener("change", () => {
      if (box.checked) state.chosen.add(doc.name); else state.chosen.delete(doc.name);
      state.lost = [];
      renderScope();
    });
    const remove = el("button", { type: "button", class: "delete", "aria-label": `Delete ${doc.name}`, text: "Delete" });
    remove.addEventListener("click", () => deleteDocument(doc.name));
    list.append(el("li", { "data-name": doc.name },
      el("label", {}, box, el("span", { class: "doc", text: doc.name })),
      el("div", { class: "meta muted", text: describeDocument(doc) }),
      remove));
  }
  if (!state.documents.length) list.append(el("li", { class: "muted", text: "Nothing indexed yet: add PDFs above." }));
  if (kept) refocusDocument(list, kept);
  renderScope();
}

// The list is drawn anew after each build: which document's control has the keyboard, to give it back after.
// names: that document, then those after it, then those before it, nearest first (where it was deleted).
function focusedDocument(list) {
  const focused = document.activeElement;
  const row = list.contains(focused) && focused.closest("li[data-name]");
  if (!row) return focused === list ? { names: [], control: "input" } : null;
  const names = [...list.querySelectorAll("li[data-name]")].map((li) => li.dataset.name);
  const at = names.indexOf(row.dataset.name);
  return { names: [...names.slice(at), ...names.slice(0, at).reverse()],
           control: focused.matches(".delete") ? ".delete" : "input" };
}

function refocusDocument(list, kept) {
  const rows = new Map([...list.querySelectorAll("li[data-name]")].map((li) => [li.dataset.name, li]));
  const name = kept.names.find((n) => rows.has(n));
  if (name) rows.get(name).querySelector(kept.control).focus();
  else list.focus(); // no document left to go to: the list, which says it is empty
}

function renderScope() {
  const names = new Set(state.documents.map((d) => d.name));
  for (const name of [...state.chosen]) {
    if (!names.has(name)) { state.chosen.delete(name); state.lost.push(name); }
  }
  const lost = state.lost.length ? `${lostDocuments()}. ` : "";
  $("scope").textContent = lost + (state.chosen.size
    ? `Questions search ${state.chosen.size} chosen document${state.chosen.size === 1 ? "" : "s"}.`
    : state.lost.length ? "Tick other documents, or All to ask every document." : "Questions search every document.");
}

function lostDocuments() {
  return `${state.lost.join(", ")}, which you chose, ${state.lost.length === 1 ? "is" : "are"} no longer indexed`;
}

// A question whose chosen documents were all deleted meanwhile would otherwise search every document unasked
function scopeGone() {
  if (!state.lost.length || state.chosen.size) return false;
  setStatus(`Not asked: ${lostDocuments()}. Tick other documents, or All to ask every document.`);
  return true;
}

// Whether the list could be read (not without the API token, say)
async function loadDocuments() {
  try {
    state.documents = (await getJSON("/api/documents")).documents;
    renderDocuments();
    return true;
  } catch (error) {
    setBackgroundStatus(error.message);
    return false;
  }
}

async function deleteDocument(name) {
  if (!confirm(`Delete ${name} from the data folder and the index?`)) return;
  try {
    await getJSON(`/api/documents/${documentPath(name)}`, { method: "DELETE" });
    state.chosen.delete(name);
    refreshBuilds();
  } catch (error) {
    setStatus(error.message);
  }
}

async function upload(files) {
  for (const old of [...$("builds").querySelectorAll(".note.error")]) old.remove(); // the upload before's failure
  const chosen = [...files];
  const pdfs = chosen.filter((file) => /\.pdf$/i.test(file.name));
  const others = chosen.filter((file) => !pdfs.includes(file));
  if (others.length) {
    // Left out here: the server refuses a whole upload with one file that is not a PDF, the PDFs with it
    failedNote(`Not uploaded (only PDF files can be): ${others.map((f) => f.name).join(", ")}`);
  }
  if (!pdfs.length) return;
  const form = new FormData();
  for (const file of pdfs) form.append("files", file, file.name);
  const note = el("div", { class: "note", text: `Uploading ${pdfs.map((f) => f.name).join(", ")}…` });
  $("builds").prepend(note);
  try {
    let response = await api("/api/documents", { method: "POST", body: form });
    if (response.status === 409) {
      // The body can be read once; the server's words name the file, then advise the API's ?replace=true
      const taken = (await errorOf(response)).message.replace(/; upload it with \?replace=true.*$/, "");
      if (!confirm(`${taken}.\n\nReplace it with the file you chose?`)) throw new Error(`${taken}; not replaced`);
      response = await api("/api/documents?replace=true", { method: "POST", body: form });
    }
    if (!response.ok) throw await errorOf(response);
    note.remove();
    refreshBuilds();
  } catch (error) {
    note.remove();
    const several = pdfs.length > 1 ? `; none of the ${pdfs.length} files was uploaded` : "";
    failedNote(`Upload failed: ${error.message}${several}`);
  }
}

function failedNote(text) {
  const note = el("div", { class: "note error", text });
  note.prepend(dismissButton("Dismiss upload message", note));
  $("builds").prepend(note);
  announce(text); // the build panel is no live region: it would be read again at each look
}

// × that puts `box` away; the keyboard goes to the next message's ×, or to Add PDFs above, not to the page's top
function dismissButton(label, box, onDismiss = () => {}) {
  const button = el("button", { type: "button", class: "dismiss", title: label, "aria-label": label, text: "×" });
  button.addEventListener("click", () => {
    onDismiss();
    box.remove();
    if (document.activeElement === document.body) ($("builds").querySelector(".dismiss") || $("add-pdfs")).focus();
  });
  return button;
}

// What a build did, from its report once it is done: the files it was asked for are not what it changed
// (a skipped upload indexed nothing; the watcher's first look names every file and finds them unchanged).
function buildTitle(build) {
  const asked = build.files.length ? build.files.join(", ") : "the data folder";
  const report = build.report;
  if (build.state !== "done" || !report) {
    const title = { queued: "Waiting to index", running: "Indexing", failed: "Could not index" }[build.state] || "Indexed";
    return [`${title} (${build.trigger}): ${asked}${build.waiting_for ? ` (${build.waiting_for})` : ""}`, build.state];
  }
  const changes = [["added", report.added], ["updated", report.updated], ["renamed", report.renamed],
                   ["removed", report.removed]].filter(([, names]) => names && names.length)
    .map(([what, names]) => `${what} ${names.join(", ")}`);
  if (build.trigger === "delete" && changes.every((change) => change.startsWith("removed "))) {
    // a deletion: "Deleted", and for a file the index never held, that it had not been indexed (it read "Up to
    // date (delete): up to date", which never said the file was gone)
    return [report.removed && report.removed.length ? `Deleted ${report.removed.join(", ")}`
                                                    : `Deleted ${asked} (it was not indexed)`, "done"];
  }
  if (changes.length) return [`Indexed (${build.trigger}): ${changes.join("; ")}`, "done"];
  // build.skipped is every file the folder leaves out; the title names those this build was asked for
  const refused = build.skipped.map((s) => s.name).filter((name) => build.files.includes(name));
  if (refused.length) return [`Not indexed (${build.trigger}): ${refused.join(", ")}`, "left-out"];
  return [`Up to date (${build.trigger})`, "done"];
}

function renderBuild(build, latestDone) {
  const [title, kind] = buildTitle(build);
  const box = el("div", { class: `build ${kind}` });
  if (build.state === "done" || build.state === "failed") {
    box.append(dismissButton("Dismiss build message", box, () => state.dismissed.add(build.id)));
  }
  box.append(el("div", { text: title }));
  if (build.state === "running" || build.state === "queued") {
    const bar = el("progress", { max: String(build.pages_total || 1) });
    bar.value = build.pages_done;
    box.append(bar, el("span", { class: "muted", text: build.pages_total ? ` ${build.pages_done} of ${build.pages_total} pages` : "" }));
  }
  if (build.report) box.append(el("div", { class: "muted", text: build.report.summary }));
  if (build.error) box.append(el("div", { class: "error", text: build.error }));
  if (build.skipped.length) {
    // The latest finished build's skipped files can be deleted here: they are in the data folder, not in the index.
    const item = (s) => {
      const li = el("li", {}, el("b", { text: s.name }), `: ${s.reason}`);
      if (latestDone && !s.name.endsWith("/")) {
        const remove = el("button", { type: "button", class: "delete-skipped", text: "Delete file",
                                      "aria-label": `Delete file ${s.name}` });
        remove.addEventListener("click", () => deleteDocument(s.name));
        li.append(" ", remove);
      }
      return li;
    };
    box.append(el("ul", { class: "skipped" }, ...build.skipped.map(item)));
  }
  return box;
}

// The boxes of the builds shown, each redrawn only where what it shows changed: redrawn at every look, they took
// the keyboard focus from their Dismiss and Delete file buttons every few seconds. A box redrawn (or gone) under
// the focus gives it to the same button in the new box, or to the box now in its place.
function showBuilds(shown) {
  const area = $("builds");
  const focused = focusedBuild(area);
  const old = new Map([...area.querySelectorAll(".build")].map((box) => [box.dataset.id, box]));
  let next = area.querySelector(".build"); // where the next box goes: the upload notes stay above the builds
  for (const [build, latestDone] of shown) {
    const key = JSON.stringify([build, latestDone]);
    let box = old.get(build.id);
    if (box && drawnFrom.get(box) === key) old.delete(build.id); // kept as it is
    else {
      box = renderBuild(build, latestDone);
      box.dataset.id = build.id;
      drawnFrom.set(box, key);
    }
    if (box === next) next = box.nextElementSibling;
    else area.insertBefore(box, next);
  }
  for (const gone of old.values()) gone.remove();
  if (focused && document.activeElement === document.body) refocusBuild(area, focused);
}

const drawnFrom = new WeakMap(); // a build's box → what it was drawn from (the build, and whether the latest done)

// The focused control in the build panel: its name, and the place of its box
function focusedBuild(area) {
  const focused = document.activeElement;
  if (focused === area || !area.contains(focused)) return null;
  return { name: focused.getAttribute("aria-label"), place: [...area.children].indexOf(focused.closest(".build, .note")) };
}

function refocusBuild(area, focused) {
  const same = [...area.querySelectorAll("button")].find((button) => button.getAttribute("aria-label") === focused.name);
  const inPlace = area.children[Math.min(focused.place, area.children.length - 1)];
  const button = same || (inPlace && inPlace.querySelector("button"));
  (button || area).focus();
}

let buildTimer = null;

async function refreshBuilds() {
  clearTimeout(buildTimer);
  let active = false;
  try {
    const builds = (await getJSON("/api/builds")).builds;
    let finished = false;
    const news = []; // what a screen reader is told: builds started or finished since the last look
    const latestDone = builds.find((build) => build.state === "done");
    // Shown: the builds under way and the latest finished one, which says what is true now (its skipped files are
    // all the folder leaves out); older ones reported problems since fixed, and pushed the list out of view
    const latestFinished = builds.find((build) => build.state === "done" || build.state === "failed");
    const shown = [];
    for (const build of builds) {
      // A build finished since the last look, or one this page never saw running (another user's delete,
      // done between two looks): the document list may have changed.
      const before = state.seenBuilds.get(build.id);
      if (build.state === "done" && before !== "done") finished = true;
      state.seenBuilds.set(build.id, build.state);
      const running = build.state === "queued" || build.state === "running";
      active = active || running;
      // those of before the page was opened are no news; a build waiting, then running, is said once
      if (state.buildsSeen && (before === undefined || (!running && before !== build.state))) {
        news.push(buildTitle(build)[0]);
      }
      if ((running || build === latestFinished) && !state.dismissed.has(build.id)) {
        shown.push([build, build === latestDone]);
      }
    }
    state.buildsSeen = true;
    showBuilds(shown);
    if (news.length) announce(news.join(". "));
    if (finished) {
      loadDocuments();
      refreshHealth(); // the header's count of documents
    }
  } catch (error) {
    setBackgroundStatus(error.message);
  }
  buildTimer = setTimeout(refreshBuilds, active ? 700 : 4000);
}

async function refreshHealth() {
  try {
    const health = await getJSON("/api/health");
    const parts = [health.index ? `${health.index.documents} documents, ${health.index.chunks} passages` : "no index yet"];
    parts.push(health.model ? `${health.model} (${health.backend})` : "passages only (no model)");
    // the queue counts the question being answered too
    if (health.queue) parts.push(`${health.queue} question${health.queue === 1 ? "" : "s"} with the model, answered or waiting`);
    if (health.problem) parts.push(health.problem);
    setHealth(parts.join(" · "));
    if ($("status").textContent === UNREACHABLE) setStatus(""); // the server is back
  } catch (error) {
    setHealth(error.message);
  }
}

// The header is a live region: written only when its words change, not read out again every 10 s
function setHealth(text) {
  if ($("health").textContent !== text) $("health").textContent = text;
}

// ------------------------------------------------------------------ wiring

function wire() {
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); ask(); }
  });
  $("question").addEventListener("input", () => {
    const question = $("question");
    if (question.value.length >= question.maxLength) {
      setStatus(`A question holds at most ${question.maxLength.toLocaleString("en")} characters: the rest was cut.`);
    }
  });
  $("skip").addEventListener("click", (event) => { event.preventDefault(); $("question").focus(); });
  $("ask-each").addEventListener("click", askEach);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort()); // endQuestion moves the focus
  $("copy").addEventListener("click", copyAnswer);
  $("csv").addEventListener("click", downloadCSV);
  $("prev").addEventListener("click", () => turnPage(-1));
  $("next").addEventListener("click", () => turnPage(1));
  $("close-viewer").addEventListener("click", closeViewerByUser);
  $("zoom-in").addEventListener("click", () => zoomStep(1));
  $("zoom-out").addEventListener("click", () => zoomStep(-1));
  $("fit-width").addEventListener("click", () => zoomTo(null));
  new ResizeObserver(viewerResized).observe($("page-frame"));
  document.addEventListener("keydown", (event) => {
    // A search box's own Escape clears it; from a checkbox or a button, Escape is the page's
    if (event.key === "Escape" && !event.target.matches("input[type=search], input[type=password], input[type=text]")) {
      if (state.viewer && !event.target.closest("textarea")) { closeViewerByUser(); return; }
      if (state.controller) { state.controller.abort(); return; } // stop the answer
    }
    if (!state.viewer || event.target.closest("textarea, input")) return;
    // + - 0 zoom where the keyboard is in the viewer (elsewhere they may be typed, or scroll a list); the browser's
    // own zoom (Ctrl and +) is left to it
    if ($("viewer").contains(event.target) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      const zoom = { "+": () => zoomStep(1), "=": () => zoomStep(1), "-": () => zoomStep(-1), "0": () => zoomTo(null) }[event.key];
      if (zoom) { event.preventDefault(); zoom(); return; }
    }
    // In a zoomed page wider than its box, the arrows scroll it across
    const frame = $("page-frame");
    if (event.target === frame && frame.scrollWidth > frame.clientWidth) return;
    if (event.key === "ArrowLeft") turnPage(-1);
    if (event.key === "ArrowRight") turnPage(1);
  });
  $("doc-filter").addEventListener("input", renderDocuments);
  $("select-none").addEventListener("click", () => { state.chosen.clear(); state.lost = []; renderDocuments(); });
  const drop = $("drop");
  // A click anywhere in the zone opens the file chooser; Add PDFs… in it is the keyboard's and screen reader's way
  drop.addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => { upload(event.target.files); event.target.value = ""; });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload(event.dataTransfer.files);
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("docqa-token", state.token);
    $("token-form").hidden = true;
    setStatus("");
    start();
  });
}

async function start() {
  refreshBuilds();
  refreshHealth();
  // A link's documents are ticked once the list is known; without the API token it waits for the token
  if (await loadDocuments()) followLink();
}

wire();
start();
setInterval(refreshHealth, 10000);
window.addEventListener("hashchange", followLink); // back and forward between questions, a link pasted in
