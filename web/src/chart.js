// One uPlot chart of one metric's series; redrawn in place as points come.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.js';
import { number } from './format.js';

const PALETTE = ['#2f7ed8', '#e4572e', '#17a05d', '#a15dd6', '#d19a00', '#0f9fb5'];

function colorFor(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

/** `points` is the API's [[t, step, value], …]; `xAxis` is 'time' or 'step'. */
export function MetricChart({ name, points, xAxis }) {
  const box = useRef(null);
  const plot = useRef(null);
  const byStep = xAxis === 'step';
  const data = (() => {
    const rows = byStep ? points.filter((p) => p[1] !== null) : points;
    return [rows.map((p) => (byStep ? p[1] : p[0])), rows.map((p) => p[2])];
  })();

  useEffect(() => {
    const width = () => Math.max(240, box.current.clientWidth);
    plot.current = new uPlot({
      width: width(),
      height: 180,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: !byStep } },
      axes: [
        { stroke: '#8a94a6', grid: { stroke: '#eef1f5' } },
        { stroke: '#8a94a6', grid: { stroke: '#eef1f5' }, size: 60,
          values: (u, vals) => vals.map(number) },
      ],
      series: [{}, { label: name, stroke: colorFor(name), width: 1.5, spanGaps: true,
        points: { show: data[0].length < 60 } }],
    }, data, box.current);
    const onResize = () => plot.current.setSize({ width: width(), height: 180 });
    window.addEventListener('resize', onResize);
    return () => {
      window.removeEventListener('resize', onResize);
      plot.current.destroy();
    };
  }, [name, byStep]);

  useEffect(() => {
    plot.current && plot.current.setData(data);
  }, [points]);

  const last = points.length ? points[points.length - 1][2] : null;
  return html`<figure class="chart" data-metric=${name}>
    <figcaption><span>${name}</span><strong>${number(last)}</strong></figcaption>
    <div ref=${box}></div>
  </figure>`;
}
