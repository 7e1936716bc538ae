// The web chat page: talks to the public API as a shop's chat system would.
// GET /chat/settings.json (image limits, whether a key is needed), GET /v1/shops, then
// POST /v1/chat/completions with stream: true, reading the SSE stream as it arrives.
// A shop with demo shoppers offers "Signed in as": POST /v1/demo/shopper-token mints a token the
// page sends as X-Shopper-Token, as a shop's own chat page would send the one its servers sign.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "cs-assistant.api-key";
// Photos are resized to at most this many pixels on the longest side before upload (and to
// the server's own pixel and byte limits): a phone photo of 12 MP becomes ~0.3 MB.
const MAX_SIDE = 1280;

const state = {
  settings: null,
  key: localStorage.getItem(KEY_STORAGE) || "",
  history: [],        // OpenAI-shaped messages of the current conversation
  photo: null,        // {dataUrl, width, height, bytes} waiting to be sent
  busy: false,
  retryTimer: null,
  shops: [],          // GET /v1/shops' data
  shopper: null,      // {id, token, expiresAt} of the signed-in demo shopper, or null
  signingIn: null,    // the sign-in in progress (a message sent meanwhile waits for it)
};

function headers(extra = {}) {
  const h = { ...extra };
  if (state.key) h["Authorization"] = `Bearer ${state.key}`;
  return h;
}

function showBanner(text, kind = "") {
  const banner = $("banner");
  banner.textContent = text;
  banner.className = `banner ${kind}`;
  banner.hidden = !text;
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy || state.retryTimer !== null;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.error || { message: response.statusText, code: String(response.status) };
  } catch {
    return { message: response.statusText || `HTTP ${response.status}`, code: String(response.status) };
  }
}

// 429 and 503 carry Retry-After: count it down, then let the user send again.
function retryCountdown(response, error) {
  const seconds = Math.max(1, Math.ceil(Number(response.headers.get("Retry-After")) || 5));
  const what = response.status === 429 ? "Too many requests 请求过多" : "The service is busy 服务繁忙";
  let left = seconds;
  clearInterval(state.retryTimer);
  const tick = () => {
    if (left <= 0) {
      clearInterval(state.retryTimer);
      state.retryTimer = null;
      showBanner("");
      setBusy(false);
      return;
    }
    showBanner(`${what}: ${error.message} — try again in ${left} s · ${left} 秒后重试`, "retry");
    left -= 1;
  };
  state.retryTimer = setInterval(tick, 1000);
  tick();
  setBusy(true);
}

function needKey(message) {
  $("key-panel").hidden = false;
  $("key-note").textContent = message;
  $("api-key").focus();
}

async function loadShops() {
  const response = await fetch("/v1/shops", { headers: headers() });
  if (response.status === 401 || response.status === 403) {
    const error = await errorOf(response);
    needKey(`${error.message} (${error.code})`);
    return;
  }
  if (!response.ok) {
    showBanner(`Could not list shops: ${(await errorOf(response)).message}`);
    return;
  }
  const { data } = await response.json();
  state.shops = data;
  const select = $("shop");
  const chosen = select.value;
  select.replaceChildren(...data.map((shop) => {
    const option = document.createElement("option");
    option.value = shop.id;
    option.textContent = shop.name;
    return option;
  }));
  if (data.some((shop) => shop.id === chosen)) select.value = chosen;
  if (!data.length) showBanner("This API key may not use any shop. 此密钥没有可用的店铺。");
  showShoppers();
}

// --- demo sign-in: the shop's demo shoppers, and a token for the chosen one ----------------------

function showShoppers() {
  const shop = state.shops.find((s) => s.id === $("shop").value);
  const shoppers = (shop && shop.demo_shoppers) || [];
  const anonymous = document.createElement("option");
  anonymous.value = "";
  anonymous.textContent = "Not signed in 未登录";
  $("shopper").replaceChildren(anonymous, ...shoppers.map((id) => {
    const option = document.createElement("option");
    option.value = id;
    option.textContent = id;
    return option;
  }));
  $("shopper-label").hidden = !shoppers.length;
  state.shopper = null;
}

async function signIn() {
  const id = $("shopper").value;
  state.shopper = null;
  if (!id) return true;
  const response = await fetch("/v1/demo/shopper-token", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", "X-Shop-Id": $("shop").value }),
    body: JSON.stringify({ shopper: id }),
  });
  if (!response.ok) {
    const error = await errorOf(response);
    showBanner(`Could not sign in as ${id}: ${error.message} (${error.code})`);
    $("shopper").value = "";
    return false;
  }
  const minted = await response.json();
  // Signed in again a minute before the token expires.
  state.shopper = { id, token: minted.token,
                    expiresAt: Date.now() + (minted.expires_in - 60) * 1000 };
  return true;
}

async function shopperHeaders() {
  if (state.signingIn) await state.signingIn;
  if (state.shopper && Date.now() > state.shopper.expiresAt) await signIn();
  return state.shopper ? { "X-Shopper-Token": state.shopper.token } : {};
}

function bubble(kind, text = "") {
  $("hint")?.remove();
  const node = document.createElement("div");
  node.className = `msg ${kind}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  node.append(body);
  $("log").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function showService(node, service, meta) {
  if (service && service.sources && service.sources.length) {
    const list = document.createElement("div");
    list.className = "sources";
    for (const source of service.sources) {
      const tag = document.createElement("span");
      tag.textContent = `${source.title} · ${source.id}`;
      tag.title = source.id;
      list.append(tag);
    }
    node.append(list);
  }
  if (service && service.handoff) {
    const note = document.createElement("span");
    note.className = "handoff-note";
    note.textContent = `Handed to a human agent 已转人工 (${service.handoff.reason})`;
    node.append(note);
    showBanner(`A human agent will take over this conversation · 人工客服将接手此对话 ` +
               `(${service.handoff.reason})`, "handoff");
  }
  const how = { faq: "curated FAQ answer 常见问题", hit: "cached answer 缓存" };
  const parts = [meta.model];
  if (service && service.order) parts.push(`order look-up: ${service.order} 订单查询`);
  if (service && how[service.cache]) parts.push(how[service.cache]);
  else if (meta.completionTokens === 0) parts.push("fixed reply, no model call");
  else if (meta.completionTokens !== null) parts.push(`model, ${meta.completionTokens} tokens`);
  if (meta.ttftMs !== null) parts.push(`first text ${meta.ttftMs} ms`);
  const line = document.createElement("span");
  line.className = "meta";
  line.textContent = parts.filter(Boolean).join(" · ");
  node.append(line);
}

// One SSE stream: append content deltas as they arrive; the last chunk carries `service`.
async function readStream(response, node, started) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const text = node.querySelector(".text");
  const meta = { model: "", ttftMs: null, completionTokens: null };
  let buffer = "", answer = "", service = null, failed = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) { failed = chunk.error; continue; }
        meta.model = chunk.model || meta.model;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (meta.ttftMs === null) meta.ttftMs = Math.round(performance.now() - started);
          answer += delta.content;
          text.textContent = answer;
          node.scrollIntoView({ block: "end" });
        }
        if (chunk.service) service = chunk.service;
        if (chunk.usage) meta.completionTokens = chunk.usage.completion_tokens;
      }
    }
  }
  if (failed) {
    node.classList.add("error");
    text.textContent = `${answer}\n[${failed.code}] ${failed.message}`;
  }
  showService(node, service, meta);
  return failed ? null : answer;
}

async function send(event) {
  event.preventDefault();
  if (state.busy) return;
  const input = $("message");
  const words = input.value.trim();
  if (!words && !state.photo) return;
  const photo = state.photo;
  const content = photo
    ? [...(words ? [{ type: "text", text: words }] : []),
       { type: "image_url", image_url: { url: photo.dataUrl } }]
    : words;
  const mine = bubble("user", words);
  if (photo) {
    const img = document.createElement("img");
    img.src = photo.dataUrl;
    img.alt = "Photo sent";
    mine.prepend(img);
  }
  state.history.push({ role: "user", content });
  input.value = "";
  clearPhoto();
  setBusy(true);
  const started = performance.now();
  let response;
  try {
    response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", "X-Shop-Id": $("shop").value,
                         ...(await shopperHeaders()) }),
      body: JSON.stringify({ messages: state.history, stream: true,
                             stream_options: { include_usage: true } }),
    });
  } catch (error) {
    state.history.pop();
    bubble("bot error", `Network error: ${error.message}`);
    setBusy(false);
    return;
  }
  if (!response.ok) {
    // Not answered: forget the turn, give the text back to resend.
    state.history.pop();
    input.value = words;
    const error = await errorOf(response);
    if (response.status === 429 || response.status === 503) {
      mine.remove();
      retryCountdown(response, error);
      return;
    }
    if (response.status === 401 && error.code.startsWith("shopper_token")) {
      state.shopper = null;
      $("shopper").value = "";
      showBanner(`Signed out: ${error.message} · 已退出登录，请重新选择顾客`);
    } else if (response.status === 401) needKey(`${error.message} (${error.code})`);
    bubble("bot error", `${response.status} ${error.code}: ${error.message}`);
    setBusy(false);
    return;
  }
  const node = bubble("bot");
  node.dataset.route = response.headers.get("x-route") || "";
  const answer = await readStream(response, node, started);
  if (answer === null) state.history.pop();
  else state.history.push({ role: "assistant", content: answer });
  setBusy(false);
  input.focus();
}

// --- photos: resized in the browser to the server's limits before upload ---------------------

function clearPhoto() {
  state.photo = null;
  $("attachment").hidden = true;
  $("photo").value = "";
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error("not an image the browser can read")); };
    img.src = url;
  });
}

function dataUrlBytes(dataUrl) {
  const base64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
  return Math.floor(base64.length * 3 / 4);
}

async function resizedPhoto(file) {
  const limits = state.settings;
  const img = await loadImage(file);
  let scale = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight),
                       Math.sqrt(limits.max_image_pixels / (img.naturalWidth * img.naturalHeight)));
  // Too small for the vision model's patches: scale up to the minimum side.
  scale = Math.max(scale, limits.min_image_side / Math.min(img.naturalWidth, img.naturalHeight));
  const canvas = document.createElement("canvas");
  let quality = 0.85;
  for (;;) {
    canvas.width = Math.max(limits.min_image_side, Math.round(img.naturalWidth * scale));
    canvas.height = Math.max(limits.min_image_side, Math.round(img.naturalHeight * scale));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff";  // JPEG has no transparency
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(img, 0, 0, canvas.width, canvas.height);
    const dataUrl = canvas.toDataURL("image/jpeg", quality);
    const bytes = dataUrlBytes(dataUrl);
    if (bytes <= limits.max_image_bytes) {
      return { dataUrl, width: canvas.width, height: canvas.height, bytes };
    }
    // Too large still: lower the quality first, then the size.
    if (quality > 0.5) quality -= 0.15; else scale *= 0.7;
  }
}

async function attach() {
  const file = $("photo").files[0];
  if (!file) return;
  if (!state.settings.vision) {
    showBanner("This server has no vision model. 此服务不支持图片。");
    clearPhoto();
    return;
  }
  try {
    state.photo = await resizedPhoto(file);
  } catch (error) {
    showBanner(`Photo not attached: ${error.message}`);
    clearPhoto();
    return;
  }
  $("attachment-preview").src = state.photo.dataUrl;
  $("attachment-info").textContent =
    `${state.photo.width}×${state.photo.height}, ${Math.round(state.photo.bytes / 1024)} KB`;
  $("attachment").hidden = false;
}

function newChat() {
  state.history = [];
  $("log").replaceChildren();
  showBanner("");
}

async function start() {
  state.settings = await (await fetch("/chat/settings.json")).json();
  $("api-key").value = state.key;
  $("key-button").hidden = state.settings.keys === "off";
  if (state.settings.keys === "required" && !state.key) {
    needKey("This server asks for an API key. It stays in this browser. 请输入接口密钥。");
  }
  $("key-panel").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    localStorage.setItem(KEY_STORAGE, state.key);
    $("key-panel").hidden = true;
    await loadShops();
  });
  $("composer").addEventListener("submit", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  $("photo").addEventListener("change", attach);
  $("attachment-remove").addEventListener("click", clearPhoto);
  $("new-chat").addEventListener("click", newChat);
  $("key-button").addEventListener("click", () => {
    $("key-panel").hidden = !$("key-panel").hidden;
    if (!$("key-panel").hidden) $("api-key").focus();
  });
  $("shop").addEventListener("change", () => { showShoppers(); newChat(); });
  // Another shopper is another conversation: their orders are not the previous one's.
  $("shopper").addEventListener("change", async () => {
    newChat();
    state.signingIn = signIn();
    await state.signingIn;
    state.signingIn = null;
  });
  await loadShops();
  document.body.dataset.ready = "true";  // for the browser test
}

start();
