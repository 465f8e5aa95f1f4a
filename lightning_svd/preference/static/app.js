"use strict";

const RATER_KEY = "preference-study-rater";
const TOKEN_KEY = "preference-study-token";
// A rater comes with a personal link (?token=...) or, in an open study, with a name typed in.
const state = { rater: null, token: null, item: null, busy: false };
const byId = (id) => document.getElementById(id);

function show(sectionId) {
  for (const id of ["sign-in", "task", "done"]) byId(id).hidden = id !== sectionId;
  byId("switch-rater").hidden = sectionId === "sign-in";
}

function showError(message) {
  const box = byId("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

function setVoting(enabled) {
  byId("vote-left").disabled = !enabled;
  byId("vote-right").disabled = !enabled;
}

function setProgress(item) {
  const { answered, more } = item.progress;
  byId("progress").textContent = `${item.rater}: ${answered} answered, up to ${more} more`;
}

function whenPlayable(video) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) return resolve();
    video.addEventListener("canplay", () => resolve(), { once: true });
    video.addEventListener("error", () => reject(new Error("a video could not be played in this browser")),
      { once: true });
  });
}

async function loadNext() {
  setVoting(false);
  const query = state.token ? "" : `?rater=${encodeURIComponent(state.rater)}`;
  const item = await api(`/api/next${query}`);
  setProgress(item);
  if (item.done) {
    state.item = null;
    show("done");
    return;
  }
  state.item = item;
  show("task");
  byId("question").textContent = item.question_text;
  byId("prompt").textContent = item.prompt;
  const left = byId("left-video");
  const right = byId("right-video");
  left.src = item.left.url;
  right.src = item.right.url;
  await Promise.all([whenPlayable(left), whenPlayable(right)]);
  if (state.item !== item) return;
  left.currentTime = 0;
  right.currentTime = 0;
  await Promise.allSettled([left.play(), right.play()]);
  setVoting(true);
}

async function vote(choice) {
  const item = state.item;
  if (!item || state.busy || byId("vote-left").disabled) return;
  state.busy = true;
  setVoting(false);
  try {
    await api("/api/vote", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        ...(state.token ? {} : { rater: state.rater }),
        pair_id: item.pair_id,
        question: item.question,
        choice,
      }),
    });
    showError("");
    await loadNext();
  } catch (error) {
    showError(error.message);
    setVoting(state.item === item);
  } finally {
    state.busy = false;
  }
}

async function start({ rater = null, token = null }) {
  state.rater = rater;
  state.token = token;
  if (rater) localStorage.setItem(RATER_KEY, rater);
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  showError("");
  try {
    await loadNext();
  } catch (error) {
    showError(error.message);
  }
}

byId("rater-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const rater = byId("rater").value.trim();
  if (rater) start({ rater });
});
byId("vote-left").addEventListener("click", () => vote("left"));
byId("vote-right").addEventListener("click", () => vote("right"));
byId("switch-rater").addEventListener("click", () => {
  state.item = null;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  byId("progress").textContent = "";
  show("sign-in");
  byId("rater").focus();
});
document.addEventListener("keydown", (event) => {
  if (byId("task").hidden || event.target instanceof HTMLInputElement) return;
  if (event.key === "ArrowLeft") vote("left");
  if (event.key === "ArrowRight") vote("right");
});
const linkToken = new URLSearchParams(window.location.search).get("token");
if (linkToken) history.replaceState(null, "", "/"); // keep the token out of the address bar and history
const token = linkToken || sessionStorage.getItem(TOKEN_KEY);
if (token) {
  start({ token });
} else {
  byId("rater").value = localStorage.getItem(RATER_KEY) || "";
  byId("rater").focus();
}
