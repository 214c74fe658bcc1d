// Submit: paste or upload an experiments file, validate it with the
// daemon (dry run), see each error at its line, then start the runs.
import { useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { api } from './api.js';
import { plural } from './format.js';
import { toast } from './ui.js';

const EXAMPLE = `experiments:
  - name: toy-ppo
    command: [python3, toy_trainer.py, --lr, "{lr}", --seed, "{seed}"]
    cwd: /path/to/project
    matrix:
      lr: [3.0e-4, 1.0e-3]
      seed: [1]
    progress: {format: sb3, counter: time/total_timesteps, total: 200000}
`;

/** Line and column named in a daemon error message, if any. */
function where(message) {
  const m = message.match(/line (\d+)(?:, column (\d+))?/);
  return m ? { line: +m[1], column: m[2] ? +m[2] : 1 } : null;
}

export function SubmitView({ onSubmitted }) {
  const [text, setText] = useState('');
  const [baseDir, setBaseDir] = useState('');
  const [problem, setProblem] = useState(null);
  const [preview, setPreview] = useState(null);
  const [busy, setBusy] = useState(false);
  const editor = useRef(null);
  const gutter = useRef(null);
  const lineCount = Math.max(1, text.split('\n').length);

  const send = async (dryRun) => {
    setBusy(true);
    const body = { spec: text };
    if (baseDir.trim()) body.base_dir = baseDir.trim();
    try {
      const res = await api('POST', `/experiments${dryRun ? '?dry_run=1' : ''}`, body);
      setProblem(null);
      if (dryRun) {
        setPreview(res.runs);
      } else {
        setPreview(null);
        toast(`Submitted ${plural(res.runs.length, 'run')}: ${res.runs.map((r) => r.id).join(', ')}`);
        onSubmitted();
      }
    } catch (e) {
      setPreview(null);
      setProblem({ message: e.message, status: e.status, at: where(e.message) });
    } finally {
      setBusy(false);
    }
  };

  const load = (e) => {
    const file = e.target.files[0];
    if (!file) return;
    file.text().then((t) => {
      setText(t);
      setProblem(null);
      setPreview(null);
    });
  };

  const goTo = ({ line, column }) => {
    const lines = text.split('\n');
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += Math.max(0, column - 1);
    const ta = editor.current;
    ta.focus();
    ta.setSelectionRange(offset, offset);
    ta.scrollTop = Math.max(0, (line - 3) * 20);
  };

  const errorLine = problem && problem.at ? problem.at.line : 0;
  return html`<div class="submit-page">
    <h1>Submit experiments</h1>
    <p class="muted">An experiments file as <code>corral submit</code> takes it (keys in the user guide).
      Relative <code>cwd</code>s resolve against the base directory below, or the daemon's own
      working directory when it is empty.</p>
    <div class="toolbar">
      <label>Upload <input type="file" accept=".yaml,.yml,.json,text/yaml" data-testid="yaml-file" onChange=${load} /></label>
      <label class="grow">Base directory <input class="grow" placeholder="/abs/path (optional)" value=${baseDir}
        onInput=${(e) => setBaseDir(e.target.value)} /></label>
    </div>
    <div class="editor">
      <div class="gutter" ref=${gutter} aria-hidden="true">
        ${Array.from({ length: lineCount }, (_, i) => html`<div class=${i + 1 === errorLine ? 'bad' : ''}>${i + 1}</div>`)}
      </div>
      <textarea ref=${editor} data-testid="yaml" spellcheck="false" placeholder=${EXAMPLE}
        value=${text} onInput=${(e) => {
          setText(e.target.value);
          setPreview(null);
        }}
        onScroll=${(e) => (gutter.current.scrollTop = e.target.scrollTop)}></textarea>
    </div>
    <div class="toolbar">
      <button data-testid="validate" disabled=${busy || !text.trim()} onClick=${() => send(true)}>🔎 Validate</button>
      <button class="btn-green" data-testid="submit" disabled=${busy || !text.trim()} onClick=${() => send(false)}>🚀 Submit</button>
    </div>
    <div data-testid="submit-errors" class="submit-errors">
      ${problem && html`<div class="problem">
        <strong>${problem.status === 422 ? 'Invalid' : problem.status === 400 ? 'Cannot parse' : 'Refused'}:</strong>
        ${problem.at ? html` <a href="#" onClick=${(e) => {
          e.preventDefault();
          goTo(problem.at);
        }}>line ${problem.at.line}${problem.at.column ? `, column ${problem.at.column}` : ''}</a> — ` : ' '}
        <span class="error-text">${problem.message}</span>
      </div>`}
    </div>
    ${preview && html`<div class="preview">
      <p>✅ Valid: it would create ${plural(preview.length, 'run')}.</p>
      <table class="procs"><thead><tr><th>Run</th><th>Command</th><th>Directory</th></tr></thead>
        <tbody>${preview.map((r) => html`<tr><td>${r.id}</td><td><code>${r.command.join(' ')}</code></td>
          <td><code>${r.cwd}</code></td></tr>`)}</tbody></table>
    </div>`}
  </div>`;
}
