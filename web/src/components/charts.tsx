/** Chart.js charts (bars and lines), recreated when their data change. */

import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartConfiguration,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { useLayoutEffect, useRef } from "preact/hooks";
import { formatValue } from "../heatmap";
import { nowIfOnScreen } from "../idle";

Chart.register(
  BarController,
  BarElement,
  CategoryScale,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  Legend,
);

export interface Series {
  label: string;
  values: (number | null)[];
  color: string | string[];
}

export function ChartBox({
  type,
  labels,
  series,
  height = 220,
  width,
  xTitle,
  yTitle,
  testId,
  stacked = false,
  onClick,
}: {
  type: "bar" | "line";
  labels: string[];
  series: Series[];
  height?: number;
  width?: number;
  xTitle?: string;
  /** Several strings: a title of several lines (a long one would be cut off along a short axis). */
  yTitle?: string | string[];
  testId?: string;
  stacked?: boolean;
  onClick?: (index: number) => void;
}) {
  const ref = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  const click = useRef(onClick);
  click.current = onClick;
  const key = JSON.stringify([type, labels, series, xTitle, yTitle, stacked]);
  // A layout effect: a chart on the screen is drawn before the paint, so the view shows with it in one frame.
  useLayoutEffect(() => {
    if (!ref.current) return;
    const cfg: ChartConfiguration = {
      type,
      data: {
        labels,
        datasets: series.map((s) => ({
          label: s.label,
          data: s.values,
          backgroundColor: s.color,
          borderColor: s.color,
          borderWidth: type === "line" ? 2 : 0,
          pointRadius: type === "line" ? 3 : 0,
        })),
      },
      options: {
        animation: false,
        responsive: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: series.length > 1 }, tooltip: { enabled: true } },
        scales: {
          x: { stacked, title: { display: !!xTitle, text: xTitle ?? "" } },
          y: { stacked, beginAtZero: true, title: { display: !!yTitle, text: yTitle ?? "" } },
        },
        onClick: (_e, els) => {
          if (els.length && click.current) click.current(els[0].index);
        },
      },
    };
    const canvas = ref.current;
    const build = () => {
      chart.current?.destroy();
      chart.current = new Chart(canvas, cfg);
      // What the chart holds, read back from it (tests compare it with the server's numbers).
      canvas.dataset.series = JSON.stringify(
        chart.current.data.datasets.map((d) => ({ label: d.label, data: d.data })),
      );
    };
    // A chart below the screen is built in an idle period (a chart costs ~10–20 ms): the view's first paint
    // does not wait for what cannot be seen yet.
    const cancel = nowIfOnScreen(canvas, build);
    return () => {
      cancel();
      chart.current?.destroy();
      chart.current = null;
    };
  }, [key]);
  const w = width ?? Math.max(260, Math.min(720, 60 + labels.length * 34));
  return (
    <div class="chart" style={{ width: `${w}px`, height: `${height}px` }}>
      <canvas
        ref={ref}
        width={w}
        height={height}
        role="img"
        aria-label={`${type} chart${yTitle ? ` of ${[yTitle].flat().join(" ")}` : ""}${xTitle ? ` by ${xTitle}` : ""}: ${series
          .map(
            (s) =>
              `${s.label} ${s.values.map((v, i) => `${labels[i]} ${v === null ? "–" : formatValue(v)}`).join(", ")}`,
          )
          .join("; ")}`}
        data-testid={testId}
        data-points={labels.length}
      />
    </div>
  );
}
