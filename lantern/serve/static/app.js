// LANTERN playground: chat and raw completion over the server's own OpenAI-compatible API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { mode: "chat", history: [], controller: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function numberField(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function requestSettings() {
  const body = {
    model: $("model").value || undefined,
    max_tokens: numberField("max_tokens"),
    temperature: numberField("temperature"),
    top_p: numberField("top_p"),
    stream: true,
    stream_options: { include_usage: true },
  };
  const optional = { top_k: 0, min_p: 0, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 };
  for (const [name, off] of Object.entries(optional)) {
    const v = numberField(name);
    if (v !== null && v !== off) body[name] = v;
  }
  const seed = numberField("seed");
  if (seed !== null) body.seed = Math.trunc(seed);
  const depth = numberField("depth");
  if (depth !== null) body.depth = Math.trunc(depth);
  const stops = $("stop_strings").value.split("\n").filter((s) => s.length > 0);
  if (stops.length) body.stop = stops;
  if ($("adaptive").checked) {
    body.adaptive = true;
    for (const name of ["tau_low", "tau_mid", "tau_high"]) body[name] = numberField(name);
  }
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  return body;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const data = await r.json();
    if (!r.ok) throw new Error(data.error ? data.error.message : r.statusText);
    const select = $("model");
    select.innerHTML = "";
    for (const m of data.data) {
      const o = document.createElement("option");
      o.value = m.id;
      o.textContent = `${m.id} (${m.context_length} ctx)`;
      select.appendChild(o);
    }
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = "models: " + e.message;
  }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(who, body);
  $("transcript").appendChild(div);
  return body;
}

function shade(uncertainty, tauHigh) {
  const a = Math.max(0, Math.min(1, uncertainty / Math.max(tauHigh, 1e-6)));
  return `rgba(234, 88, 12, ${(0.08 + 0.6 * a).toFixed(2)})`;
}

function appendTrace(target, entry) {
  const span = document.createElement("span");
  span.className = "tok" + (entry.think ? " think" : "");
  span.textContent = entry.text;
  span.style.background = shade(entry.uncertainty, numberField("tau_high") || 3);
  span.title = `depth ${entry.depth} · uncertainty ${entry.uncertainty.toFixed(3)} · ` +
    `entropy ${entry.entropy.toFixed(3)}${entry.think ? " · THINK" : ""}`;
  target.appendChild(span);
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

async function send() {
  const text = $("prompt").value;
  if (!text && state.mode === "chat") return;
  const body = requestSettings();
  let target;
  let url;
  if (state.mode === "chat") {
    const messages = [];
    const system = $("system").value.trim();
    if (system) messages.push({ role: "system", content: system });
    state.history.push({ role: "user", content: text });
    messages.push(...state.history);
    body.messages = messages;
    url = "/v1/chat/completions";
    addMessage("user", text);
    target = addMessage("assistant", "");
  } else {
    body.prompt = text;
    url = "/v1/completions";
    $("transcript").innerHTML = "";
    const div = document.createElement("div");
    div.className = "msg completion";
    const prompt = document.createElement("span");
    prompt.className = "prompt-text";
    prompt.textContent = text;
    target = document.createElement("span");
    target.className = "text";
    div.append(prompt, target);
    $("transcript").appendChild(div);
  }
  target.id = "output";
  document.querySelectorAll("#transcript .text[id=output]").forEach((el) => { if (el !== target) el.removeAttribute("id"); });
  $("prompt").value = state.mode === "chat" ? "" : text;
  $("error").textContent = "";
  $("stats").textContent = "";
  $("send").disabled = true;
  $("stop").disabled = false;
  state.controller = new AbortController();
  const started = performance.now();
  let pieces = 0;
  let answer = "";
  let traced = false;
  try {
    const response = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(body), signal: state.controller.signal });
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error(err.error ? err.error.message : response.statusText);
    }
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) {
        const seconds = (performance.now() - started) / 1000;
        $("stats").textContent = `${chunk.usage.completion_tokens} tokens in ${seconds.toFixed(2)} s · ` +
          `${(chunk.usage.completion_tokens / seconds).toFixed(1)} tokens/s · prompt ${chunk.usage.prompt_tokens} tokens`;
      }
      for (const choice of chunk.choices || []) {
        const piece = state.mode === "chat" ? (choice.delta && choice.delta.content) || "" : choice.text || "";
        answer += piece;
        if (choice.adaptive_trace) {
          if (!traced) { target.textContent = ""; traced = true; }  // shaded tokens replace the live text
          for (const entry of choice.adaptive_trace) appendTrace(target, entry);
        } else if (piece) {
          target.appendChild(document.createTextNode(piece));
        }
        if (piece) pieces += 1;
        if (!chunk.usage) {
          const seconds = (performance.now() - started) / 1000;
          $("stats").textContent = `${pieces} pieces · ${seconds.toFixed(1)} s`;
        }
      }
    }
    if (state.mode === "chat") state.history.push({ role: "assistant", content: answer });
  } catch (e) {
    if (e.name !== "AbortError") $("error").textContent = e.message;
    if (state.mode === "chat" && answer === "") state.history.pop();
  } finally {
    $("send").disabled = false;
    $("stop").disabled = true;
    state.controller = null;
  }
}

function setMode(mode) {
  state.mode = mode;
  document.querySelectorAll(".mode").forEach((b) => b.classList.toggle("active", b.dataset.mode === mode));
  $("system-row").classList.toggle("hidden", mode !== "chat");
  $("transcript").innerHTML = "";
  state.history = [];
}

document.querySelectorAll(".mode").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
$("send").addEventListener("click", send);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => { $("transcript").innerHTML = ""; state.history = []; $("stats").textContent = ""; });
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
$("api-key").value = localStorage.getItem("lantern-api-key") || "";
$("api-key").addEventListener("change", () => { localStorage.setItem("lantern-api-key", $("api-key").value); loadModels(); });
loadModels();
