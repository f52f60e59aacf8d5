// Chart.js, registered with only what the pages use, in a Preact component that follows
// the page's theme (CSS custom properties) and keeps a data table for screen readers.
import {
  ArcElement,
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  DoughnutController,
  Legend,
  LinearScale,
  Tooltip,
  type ChartConfiguration,
} from "chart.js";
import { useEffect, useRef } from "preact/hooks";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, DoughnutController, ArcElement, Legend, Tooltip);

const PALETTE = ["#d97757", "#6a9bcc", "#788c5d", "#b0a27a", "#9a6fb0", "#c46686", "#4f9e9e", "#8a8a8a"];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}

function themeColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export function ChartView(props: { config: ChartConfiguration; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    Chart.defaults.color = themeColor("--muted");
    Chart.defaults.borderColor = themeColor("--border");
    const chart = new Chart(canvas.current, props.config);
    const media = matchMedia("(prefers-color-scheme: dark)");
    const retheme = () => {
      Chart.defaults.color = themeColor("--muted");
      Chart.defaults.borderColor = themeColor("--border");
      chart.update();
    };
    media.addEventListener("change", retheme);
    return () => {
      media.removeEventListener("change", retheme);
      chart.destroy();
    };
  }, [props.config]);
  return (
    <div class="chart">
      <canvas ref={canvas} role="img" aria-label={props.label} />
    </div>
  );
}
