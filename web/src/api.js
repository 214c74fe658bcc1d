// Talks to the daemon's v1 API from the page: the token, JSON calls with
// the server's own error messages, and server-sent event streams.

const TOKEN_KEY = 'corral.token';

// The URL the daemon prints carries the token in the fragment, which never
// reaches a server log or a Referer; keep it for this browser session only
// and take it out of the address bar.
export function adoptTokenFromUrl() {
  const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search + '#/');
}

export const getToken = () => sessionStorage.getItem(TOKEN_KEY) || '';
export const setToken = (t) => sessionStorage.setItem(TOKEN_KEY, t.trim());

/** An API error: `status`, `code` and the server's exact `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const authListeners = new Set();
/** `fn` runs whenever the API answers 401 (missing or wrong token). */
export function onUnauthorized(fn) {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

export async function api(method, path, body, contentType = 'application/json') {
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = contentType;
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the daemon: ${e.message}`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // A proxy's HTML error page, say: report its status below.
  }
  if (!res.ok) {
    const err = data && data.error;
    if (res.status === 401) authListeners.forEach((fn) => fn());
    throw new ApiError(res.status, err ? err.code : 'http',
      err ? err.message : `HTTP ${res.status} ${res.statusText}`);
  }
  return data;
}

/** A URL under /api/v1 that a browser fetches by itself (EventSource,
 *  <video>, a download link): the token rides as ?access_token=. */
export function authUrl(path, params = {}) {
  const q = new URLSearchParams(params);
  const token = getToken();
  if (token) q.set('access_token', token);
  const s = q.toString();
  return `/api/v1${path}${s ? (path.includes('?') ? '&' : '?') + s : ''}`;
}

export const runPath = (id, rest = '') => `/runs/${encodeURIComponent(id)}${rest}`;

/**
 * Follows a server-sent event stream. `handlers` maps event names to
 * functions of the parsed JSON data; the stream closes itself on `end`
 * (EventSource would otherwise reconnect and get the end again). Returns
 * a function that closes it.
 */
export function follow(path, params, handlers) {
  const source = new EventSource(authUrl(path, params));
  for (const [name, fn] of Object.entries(handlers)) {
    if (name === 'end' || name === 'error' || name === 'open') continue;
    source.addEventListener(name, (e) => fn(JSON.parse(e.data), e.lastEventId));
  }
  source.addEventListener('end', () => {
    source.close();
    handlers.end && handlers.end();
  });
  source.addEventListener('open', () => handlers.open && handlers.open());
  source.onerror = () => handlers.error && handlers.error(source.readyState);
  return () => source.close();
}
