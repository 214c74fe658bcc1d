// The Logs tab: stdout, stderr and the run's events as one live tail,
// with filters, search, and auto-scroll that yields to a user scrolling up.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { follow, runPath } from './api.js';
import { clock } from './format.js';

const KEEP = 5000;

function Highlight({ text, needle }) {
  if (!needle) return text;
  const parts = [];
  const lower = text.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(needle); i >= 0; i = lower.indexOf(needle, at)) {
    parts.push(text.slice(at, i), html`<mark>${text.slice(i, i + needle.length)}</mark>`);
    at = i + needle.length;
  }
  parts.push(text.slice(at));
  return parts;
}

export function LogsTab({ run, events }) {
  const lines = useRef([]);
  const [version, setVersion] = useState(0);
  const [status, setStatus] = useState('connecting…');
  const [show, setShow] = useState({ stdout: true, stderr: true, event: true });
  const [search, setSearch] = useState('');
  const [stick, setStick] = useState(true);
  const [unseen, setUnseen] = useState(0);
  const box = useRef(null);
  const stickRef = useRef(true);

  useEffect(() => {
    lines.current = [];
    let frame = 0;
    let pending = 0;
    // Lines can come by the thousand per second: render once per frame.
    const schedule = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        if (!stickRef.current) setUnseen((n) => n + pending);
        pending = 0;
        setVersion((v) => v + 1);
      });
    };
    const close = follow(runPath(run.id, '/logs'), { follow: 1, tail: 1000 }, {
      open: () => setStatus('live'),
      line: (l) => {
        lines.current.push(l);
        if (lines.current.length > KEEP * 1.2) lines.current = lines.current.slice(-KEEP);
        pending++;
        schedule();
      },
      end: () => setStatus('the run has ended; every line is here'),
      error: (state) => setStatus(state === 2 ? 'disconnected' : 'reconnecting…'),
    });
    return () => {
      close();
      cancelAnimationFrame(frame);
    };
  }, [run.id]);

  const needle = search.trim().toLowerCase();
  const all = lines.current.slice(-KEEP).concat(events.map((e) =>
    ({ stream: 'event', t: e.t, text: `[${e.type}] ${e.message}` })));
  // RFC 3339 times in UTC compare as strings; the sort is stable, so lines
  // of one instant keep their order.
  if (events.length) all.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
  const visible = all.filter((l) => show[l.stream]
    && (!needle || l.text.toLowerCase().includes(needle)));

  useLayoutEffect(() => {
    if (stickRef.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [version, events.length, show, needle]);

  const onScroll = () => {
    const b = box.current;
    // A scroll queued as the tab closes arrives after the box is gone.
    if (!b) return;
    const atBottom = b.scrollHeight - b.scrollTop - b.clientHeight < 24;
    if (atBottom !== stickRef.current) {
      stickRef.current = atBottom;
      setStick(atBottom);
      if (atBottom) setUnseen(0);
    }
  };
  const toBottom = () => {
    stickRef.current = true;
    setStick(true);
    setUnseen(0);
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  };
  const toggle = (s) => setShow({ ...show, [s]: !show[s] });

  return html`<div class="logs-tab">
    <div class="toolbar">
      ${['stdout', 'stderr', 'event'].map((s) => html`<label class=${`chip chip-${s}`}>
        <input type="checkbox" data-testid=${`show-${s === 'event' ? 'events' : s}`}
          checked=${show[s]} onChange=${() => toggle(s)} /> ${s === 'event' ? 'events' : s}</label>`)}
      <input type="search" class="grow" placeholder="Search the lines shown" data-testid="log-search"
        value=${search} onInput=${(e) => setSearch(e.target.value)} />
      <span class="muted small">${visible.length} of ${all.length} lines · ${status}</span>
    </div>
    <div class="log" data-testid="log" ref=${box} onScroll=${onScroll} role="log" aria-live="off">
      ${visible.map((l) => html`<div class=${`line ${l.stream}`} data-stream=${l.stream}>
        <span class="t">${clock(l.t)}</span><span class="text"><${Highlight} text=${l.text} needle=${needle} /></span>
      </div>`)}
    </div>
    ${!stick && html`<button class="jump" onClick=${toBottom}>
      ⬇ Follow${unseen ? ` (${unseen} new)` : ''}</button>`}
  </div>`;
}
