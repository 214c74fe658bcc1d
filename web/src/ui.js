// Page-wide pieces: the notice that reports an action's outcome, the
// confirmation dialog, and the token prompt.
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { api, getToken, setToken } from './api.js';

// One tiny store per widget: components subscribe, anyone may publish.
function channel(initial) {
  let value = initial;
  const subs = new Set();
  return {
    get: () => value,
    set(v) {
      value = v;
      subs.forEach((fn) => fn(v));
    },
    use() {
      const [v, setV] = useState(value);
      useEffect(() => {
        subs.add(setV);
        return () => subs.delete(setV);
      }, []);
      return v;
    },
  };
}

const toastChannel = channel(null);
let toastTimer = 0;

/** Shows `text` until replaced; errors stay until dismissed. */
export function toast(text, isError = false) {
  clearTimeout(toastTimer);
  toastChannel.set({ text, isError, key: Date.now() });
  if (!isError) toastTimer = setTimeout(() => toastChannel.set(null), 6000);
}

export function Toast() {
  const t = toastChannel.use();
  if (!t) return null;
  return html`<div class=${`toast ${t.isError ? 'error' : 'ok'}`} role="status"
      data-testid="toast">
    <span class="toast-text">${t.text}</span>
    <button class="plain" aria-label="dismiss" onClick=${() => toastChannel.set(null)}>✕</button>
  </div>`;
}

const confirmChannel = channel(null);

/** Resolves true when the user confirms `question`, false otherwise. */
export function confirmAction(title, question, okLabel, tone) {
  return new Promise((resolve) => {
    confirmChannel.set({ title, question, okLabel, tone, resolve });
  });
}

export function ConfirmDialog() {
  const c = confirmChannel.use();
  const ok = useRef(null);
  useEffect(() => ok.current && ok.current.focus(), [c]);
  if (!c) return null;
  const answer = (yes) => {
    confirmChannel.set(null);
    c.resolve(yes);
  };
  return html`<div class="overlay" onKeyDown=${(e) => e.key === 'Escape' && answer(false)}>
    <div class="dialog" role="dialog" aria-modal="true" data-testid="confirm">
      <h2>${c.title}</h2>
      <div class="dialog-body">${c.question}</div>
      <div class="dialog-buttons">
        <button data-testid="confirm-cancel" onClick=${() => answer(false)}>Cancel</button>
        <button ref=${ok} class=${`btn-${c.tone}`} data-testid="confirm-ok"
          onClick=${() => answer(true)}>${c.okLabel}</button>
      </div>
    </div>
  </div>`;
}

const tokenChannel = channel(false);
/** Asks for the token (the API said 401). */
export const askToken = () => tokenChannel.set(true);

export function TokenDialog({ onSaved }) {
  const open = tokenChannel.use();
  const [value, setValue] = useState('');
  const [error, setError] = useState('');
  if (!open) return null;
  const save = async (e) => {
    e.preventDefault();
    const previous = getToken();
    setToken(value);
    try {
      await api('GET', '/node');
      setError('');
      setValue('');
      tokenChannel.set(false);
      onSaved();
    } catch (err) {
      setToken(previous);
      setError(err.message);
    }
  };
  return html`<div class="overlay">
    <form class="dialog" role="dialog" aria-modal="true" data-testid="token-dialog" onSubmit=${save}>
      <h2>🔑 Access token</h2>
      <p>This daemon needs its API token. It is in the daemon's state directory
        (file <code>token</code>, e.g. <code>~/.local/state/corral/token</code>),
        and in the dashboard URL that <code>corral serve</code> prints.
        It is kept for this browser tab's session only.</p>
      <input type="password" autocomplete="off" placeholder="token" value=${value}
        data-testid="token-input" onInput=${(e) => setValue(e.target.value)} />
      ${error && html`<p class="error-text">${error}</p>`}
      <div class="dialog-buttons">
        <button type="submit" class="btn-green" data-testid="token-save"
          disabled=${!value.trim()}>Use token</button>
      </div>
    </form>
  </div>`;
}

/** Calls `fn` now and every `ms` while the component is mounted. */
export function useInterval(fn, ms, deps = []) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    saved.current();
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, deps);
}
