// The web chat: conversations kept by the server's session store, answers streamed from
// /v1/chat/completions. It uses only the public API, as any client would.
import { codeBlock, render } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const KEY = "edgeinf.key"; // the API key, kept in this browser once entered
const PREFS = "edgeinf.prefs"; // model, system prompt, temperature, max tokens, route, policy
const PRIVATE = "edgeinf.private"; // ids of conversations kept on the device

const state = {
  id: null, // the open conversation's session id (none until its first question)
  messages: [], // its messages, without the system prompt
  running: null, // the AbortController of the answer being streamed
  sessions: [],
};

function prefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS)) || {};
  } catch {
    return {};
  }
}

function savePrefs() {
  localStorage.setItem(
    PREFS,
    JSON.stringify({
      model: $("model").value,
      system: $("system").value,
      temperature: $("temperature").value,
      maxTokens: $("max-tokens").value,
      route: $("route").value,
      contextPolicy: $("context-policy").value,
    }),
  );
}

function privateIds() {
  try {
    return new Set(JSON.parse(localStorage.getItem(PRIVATE)) || []);
  } catch {
    return new Set();
  }
}

function setPrivate(id, on) {
  const ids = privateIds();
  if (on) ids.add(id);
  else ids.delete(id);
  localStorage.setItem(PRIVATE, JSON.stringify([...ids]));
}

// -- talking to the server --

class ApiError extends Error {}

async function errorOf(response) {
  try {
    const body = await response.json();
    const e = body.error;
    return typeof e === "string" ? e : e?.message || JSON.stringify(body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

let asking = null; // the key dialog's promise while it is open

function askKey(why) {
  if (asking) return asking;
  const dialog = $("key-dialog");
  $("key-why").textContent = why;
  $("key").value = "";
  dialog.showModal();
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        asking = null;
        const key = $("key").value.trim();
        if (dialog.returnValue === "save" && key) {
          localStorage.setItem(KEY, key);
          resolve(true);
        } else resolve(false);
      },
      { once: true },
    );
  });
  return asking;
}

async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  for (;;) {
    const key = localStorage.getItem(KEY);
    const h = { ...headers };
    if (key) h.Authorization = `Bearer ${key}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status !== 401) {
      if (!response.ok) throw new ApiError(await errorOf(response));
      return response;
    }
    const why = key ? "The server refused this key; enter the right one." : "This server needs its API key.";
    if (key) localStorage.removeItem(KEY);
    if (!(await askKey(why))) throw new ApiError("no API key: reload the page to enter it");
  }
}

async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

// -- the conversation on screen --

function node(tag, className, text) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text !== undefined) n.textContent = text;
  return n;
}

function prettyJson(text) {
  const t = text.trim();
  if (!/^[[{]/.test(t)) return null;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return null;
  }
}

function fill(body, message) {
  body.replaceChildren();
  const json = message.role === "assistant" ? prettyJson(message.content || "") : null;
  if (json !== null) body.append(codeBlock(json, "json")); // structured output
  else if (message.role === "user") body.append(node("p", "plain", message.content));
  else if (message.role === "tool") {
    const d = node("details", "tool-result");
    d.append(node("summary", "", `tool result${message.tool_call_id ? ` (${message.tool_call_id})` : ""}`));
    d.append(codeBlock(prettyJson(message.content) ?? message.content, "json"));
    body.append(d);
  } else body.append(render(message.content || ""));
  for (const call of message.tool_calls || []) {
    const args = prettyJson(call.function.arguments) ?? call.function.arguments;
    const box = node("div", "tool-call");
    box.append(node("div", "tool-name", `calls ${call.function.name}`));
    box.append(codeBlock(args, "json"));
    body.append(box);
  }
}

function bubble(message) {
  const item = node("article", `msg ${message.role}`);
  item.append(node("div", "who", message.role === "user" ? "You" : message.role === "tool" ? "Tool" : "Assistant"));
  const body = node("div", "body");
  fill(body, message);
  item.append(body);
  const tools = node("div", "tools");
  if (message.role === "assistant") {
    const copy = node("button", "copy", "Copy");
    copy.type = "button";
    copy.dataset.copy = message.content || "";
    tools.append(copy);
  }
  const status = node("div", "status");
  item.append(tools, status);
  $("log").append(item);
  return item;
}

function showConversation() {
  $("log").replaceChildren();
  for (const m of state.messages) bubble(m);
  markLast();
  $("private").checked = state.id !== null && privateIds().has(state.id);
  $("log").scrollTop = $("log").scrollHeight;
}

// Only the last answer can be regenerated.
function markLast() {
  for (const b of document.querySelectorAll("button.regenerate")) b.remove();
  const answers = document.querySelectorAll("#log article.assistant");
  const last = answers[answers.length - 1];
  const lastMessage = state.messages[state.messages.length - 1];
  if (last && lastMessage?.role === "assistant" && !state.running) {
    const again = node("button", "regenerate", "Regenerate");
    again.type = "button";
    again.addEventListener("click", regenerate);
    last.querySelector(".tools").append(again);
  }
}

function notice(text) {
  const n = node("div", "notice", text);
  $("log").append(n);
  $("log").scrollTop = $("log").scrollHeight;
}

// Where the answer came from: local, remote (why), a fallback to local (why), the cascade.
function routeOf(route) {
  if (!route) return "local";
  if (route.fallback) return `local · fallback (${route.reason})`;
  if (route.reason === "cascade") return "remote (cascade: two local answers disagreed)";
  if (route.target === "remote") return `remote (${route.reason})`;
  return route.reason === "private" ? "local (private)" : "local";
}

// The same facts as `edgeinf chat` prints after an answer.
function statusLine(facts) {
  const parts = [routeOf(facts.route)];
  if (facts.ttft !== null) parts.push(`ttft ${facts.ttft.toFixed(2)}s`);
  if (facts.tokS) parts.push(`${Math.round(facts.tokS)} tok/s`);
  const u = facts.usage;
  if (u) {
    const d = u.completion_tokens_details || {};
    const drafted = (d.accepted_prediction_tokens || 0) + (d.rejected_prediction_tokens || 0);
    if (drafted) parts.push(`accept ${Math.round((100 * d.accepted_prediction_tokens) / drafted)}% of ${drafted} drafted`);
    const cached = u.prompt_tokens_details?.cached_tokens || 0;
    if (u.restored_tokens) parts.push(`restored ${u.restored_tokens.toLocaleString()} tok from ${u.cached_from}`);
    else if (cached) parts.push(`cached ${cached.toLocaleString()} tok`);
    parts.push(`prefilled ${(u.prompt_tokens - cached).toLocaleString()} tok`);
  }
  const c = facts.context; // what the context policy did to fit the conversation
  if (c?.summarized_messages) parts.push(`${c.summarized_messages} older messages summarized`);
  else if (c?.policy === "shift") parts.push(`${c.dropped_tokens + c.shifted_tokens} tokens shifted out`);
  else if (c) parts.push(`${c.dropped_messages} old messages left out`);
  return parts.join(" · ");
}

function busy(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  document.body.classList.toggle("running", on);
}

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function request(messages) {
  const system = $("system").value.trim();
  const body = {
    model: $("model").value,
    messages: [...(system ? [{ role: "system", content: system }] : []), ...messages],
    stream: true,
    stream_options: { include_usage: true },
  };
  const temperature = parseFloat($("temperature").value);
  if (!Number.isNaN(temperature)) body.temperature = temperature;
  const maxTokens = parseInt($("max-tokens").value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  if ($("route").value !== "auto") body.route = $("route").value;
  if ($("context-policy").value) body.context_policy = $("context-policy").value;
  if ($("private").checked) body.private = true;
  return body;
}

// Ask for the answer to `messages` (which end with the question) and show it streaming.
async function answer(messages) {
  if (state.id === null) state.id = newId();
  if ($("private").checked) setPrivate(state.id, true);
  const controller = new AbortController();
  state.running = controller;
  markLast();
  busy(true);
  const item = bubble({ role: "assistant", content: "" });
  item.classList.add("streaming");
  const body = item.querySelector(".body");
  let text = "";
  let drawn = false;
  const facts = { ttft: null, tokS: 0, usage: null, route: null, context: null };
  const started = performance.now();
  let first = null;
  const calls = [];
  let finish = null;
  const draw = () => {
    drawn = false;
    fill(body, { role: "assistant", content: text, tool_calls: calls });
    $("log").scrollTop = $("log").scrollHeight;
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST",
      body: request(messages),
      headers: { "X-Session-Id": state.id },
      signal: controller.signal,
    });
    for await (const chunk of events(response)) {
      if (chunk.error) throw new ApiError(chunk.error.message || String(chunk.error));
      if (chunk.usage) facts.usage = chunk.usage;
      if (chunk.route) facts.route = chunk.route;
      if (chunk.context) facts.context = chunk.context;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      const delta = choice.delta || {};
      if (delta.content) {
        if (first === null) first = performance.now();
        text += delta.content;
      }
      for (const c of delta.tool_calls || []) {
        calls[c.index] = calls[c.index] || { id: c.id, type: "function", function: { name: "", arguments: "" } };
        calls[c.index].function.name += c.function?.name || "";
        calls[c.index].function.arguments += c.function?.arguments || "";
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      if (!drawn) {
        drawn = true;
        requestAnimationFrame(draw);
      }
    }
    const ended = performance.now();
    if (first !== null) {
      facts.ttft = (first - started) / 1000;
      const n = facts.usage?.completion_tokens || 0;
      if (ended > first && n > 1) facts.tokS = (n - 1) / ((ended - first) / 1000);
    }
    item.querySelector(".status").textContent = statusLine(facts) + (finish === "length" ? " · cut at max tokens" : "");
  } catch (err) {
    if (err.name === "AbortError") {
      item.classList.add("stopped");
      item.querySelector(".status").textContent = "stopped";
    } else {
      item.classList.add("failed");
      item.querySelector(".status").textContent = err.message;
      if (!text) {
        item.remove();
        notice(err.message);
      }
    }
  } finally {
    draw();
    item.classList.remove("streaming");
    item.querySelector(".copy").dataset.copy = text;
    state.running = null;
    busy(false);
  }
  const produced = Boolean(text || calls.length);
  state.messages = produced
    ? [...messages, { role: "assistant", content: text, ...(calls.length ? { tool_calls: calls } : {}) }]
    : messages.slice(0, -1);
  markLast();
  await listSessions();
  setTimeout(listSessions, 2000); // by then the answer's state is saved: its size shows
  return produced;
}

// An answer that never came gives the question back to the input box: nothing is lost.
function giveBack(question) {
  const asked = document.querySelectorAll("#log article.user");
  asked[asked.length - 1]?.remove();
  $("input").value = question.content;
}

async function send(event) {
  event?.preventDefault();
  const input = $("input");
  const text = input.value.trim();
  if (!text || state.running) return;
  input.value = "";
  const question = { role: "user", content: text };
  bubble(question);
  if (!(await answer([...state.messages, question]))) giveBack(question);
}

async function regenerate() {
  if (state.running) return;
  const last = state.messages.findLastIndex((m) => m.role === "user");
  if (last < 0) return;
  const messages = state.messages.slice(0, last + 1);
  state.messages = messages;
  const answers = document.querySelectorAll("#log article.assistant");
  answers[answers.length - 1]?.remove();
  if (!(await answer(messages))) giveBack(messages[messages.length - 1]);
}

// -- conversations and models --

async function listSessions() {
  const renaming = () => $("sessions").querySelector(".rename-input");
  if (renaming()) return; // not under the user's typing
  let data;
  try {
    data = (await (await api("/v1/sessions")).json()).data;
  } catch (err) {
    if (!renaming()) $("sessions").replaceChildren(node("li", "notice", err.message));
    return;
  }
  state.sessions = data;
  // A rename may have begun while the list was asked for; finishing it lists again.
  if (renaming()) return;
  const list = $("sessions");
  list.replaceChildren();
  for (const s of data) {
    const li = node("li", s.id === state.id ? "session open" : "session");
    li.dataset.id = s.id;
    const open = node("button", "title", s.title || s.id);
    open.type = "button";
    open.title = s.title || s.id;
    open.addEventListener("click", () => openSession(s.id));
    const kept = s.kv_tokens ? ` · ${s.kv_tokens.toLocaleString()} tok kept` : "";
    const facts = node("span", "facts", `${s.messages} messages${kept}`);
    const rename = node("button", "rename", "Rename");
    rename.type = "button";
    rename.addEventListener("click", () => renameSession(li, s));
    const del = node("button", "delete", "Delete");
    del.type = "button";
    del.addEventListener("click", () => deleteSession(s));
    const actions = node("span", "actions");
    actions.append(rename, del);
    li.append(open, facts, actions);
    list.append(li);
  }
}

async function openSession(id) {
  if (state.running) return;
  try {
    const s = await (await api(`/v1/sessions/${encodeURIComponent(id)}`)).json();
    state.id = s.id;
    const system = s.messages.find((m) => m.role === "system");
    $("system").value = system ? system.content : "";
    state.messages = s.messages.filter((m) => m.role !== "system");
    if ([...$("model").options].some((o) => o.value === s.model)) $("model").value = s.model;
    showConversation();
    notice(
      s.kv_tokens
        ? `${s.kv_tokens.toLocaleString()} tokens of this conversation are kept; the next answer restores them instead of prefilling`
        : "none of this conversation's state is kept; the next answer prefills it",
    );
    await listSessions();
  } catch (err) {
    notice(err.message);
  }
}

function renameSession(li, s) {
  const input = node("input", "rename-input");
  input.value = s.title;
  input.setAttribute("aria-label", "new title");
  li.querySelector(".title").replaceWith(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    input.remove();
    if (save && title && title !== s.title) {
      try {
        await api(`/v1/sessions/${encodeURIComponent(s.id)}`, { method: "PATCH", body: { title } });
      } catch (err) {
        notice(err.message);
      }
    }
    await listSessions();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    else if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

async function deleteSession(s) {
  if (!confirm(`Delete “${s.title}” and its kept state?`)) return;
  try {
    await api(`/v1/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
  } catch (err) {
    notice(err.message);
  }
  setPrivate(s.id, false);
  if (s.id === state.id) newConversation();
  await listSessions();
}

function newConversation() {
  if (state.running) state.running.abort();
  state.id = null;
  state.messages = [];
  showConversation();
  for (const li of document.querySelectorAll("#sessions li")) li.classList.remove("open");
  $("input").focus();
}

async function listModels() {
  const select = $("model");
  const wanted = prefs().model;
  try {
    // The model `edgeinf serve` was started with comes with the list, so that the choice is
    // made before anyone can read the list.
    const served = fetch("/ready").then((r) => r.json()).then((r) => r.model, () => null);
    const data = (await (await api("/v1/models")).json()).data;
    const options = [];
    for (const m of data) {
      if (m.architecture === "onnx") continue; // the sentence encoder: embeddings only
      const o = node("option", "", `${m.id}${m.loaded ? " (loaded)" : ""}`);
      o.value = m.id;
      options.push(o);
    }
    const names = new Set(options.map((o) => o.value));
    const chosen = [wanted, await served].find((name) => name && names.has(name));
    select.replaceChildren(...options);
    if (chosen) select.value = chosen; // the one chosen before, else the server's own
  } catch (err) {
    notice(err.message);
  }
}

async function copy(button) {
  const text = button.dataset.copy ?? "";
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Not a secure context (a Pi reached over plain HTTP): the old way.
    const area = node("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const was = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = was), 1200);
}

function start() {
  const p = prefs();
  $("system").value = p.system ?? "";
  $("temperature").value = p.temperature ?? "";
  $("max-tokens").value = p.maxTokens ?? "";
  $("route").value = p.route ?? "auto";
  $("context-policy").value = p.contextPolicy ?? "";
  for (const id of ["model", "system", "temperature", "max-tokens", "route", "context-policy"]) {
    $(id).addEventListener("change", savePrefs);
  }
  $("private").addEventListener("change", () => {
    if (state.id !== null) setPrivate(state.id, $("private").checked);
  });
  $("ask").addEventListener("submit", send);
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
  });
  $("stop").addEventListener("click", () => state.running?.abort());
  $("new").addEventListener("click", newConversation);
  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY);
    notice("the API key is forgotten; the next request asks for it");
  });
  $("log").addEventListener("click", (e) => {
    const b = e.target.closest("button.copy");
    if (b) copy(b);
  });
  $("menu").addEventListener("click", () => document.body.classList.toggle("side-open"));
  listModels().then(listSessions);
}

start();
