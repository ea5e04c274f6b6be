// make-world-svg.mjs - writes longpoll/server/demo_page/world.svg from Natural Earth 110m land (public domain).
//
// Run once, by hand; nothing needs it at run time, and its packages stay out
// of the repository:
//
//   mkdir /tmp/mapgen && cd /tmp/mapgen && npm init -y && npm install world-atlas topojson-client d3-geo
//   node web/tools/make-world-svg.mjs /tmp/mapgen > longpoll/server/demo_page/world.svg
//
// (The argument is the folder whose node_modules holds the packages.)
//
// Projection: equirectangular with viewBox "0 0 360 180": x = lon + 180,
// y = 90 - lat, so a page places a point at (lon + 180, 90 - lat).
// world-atlas keeps polygons on the sphere (Russia and Fiji cross the
// antimeridian, Antarctica wraps the pole), so d3-geo projects and cuts them;
// this script only collects the projected rings and writes compact path data.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const where = path.resolve(process.argv[2] || process.cwd());
const require = createRequire(path.join(where, "package.json"));
const topojson = require("topojson-client");
const land = require("world-atlas/land-110m.json");
const d3 = await import(pathToFileURL(require.resolve("d3-geo")).href);

const DECIMALS = 1; // 0.1 degree: about 0.3 px on a 1000 px wide map
const scale = 10 ** DECIMALS;
const round = (v) => Math.round(v * scale) / scale;
const fmt = (v) => {
  const s = String(round(v));
  return s.replace(/^(-?)0\./, "$1."); // "-.5" rather than "-0.5"
};

function ringPath(ring) {
  // Absolute start, then relative steps; points that round to the same spot are dropped.
  const points = [];
  for (const [x, y] of ring) {
    const p = [round(x), round(y)];
    const last = points[points.length - 1];
    if (!last || last[0] !== p[0] || last[1] !== p[1]) points.push(p);
  }
  if (points.length > 1) {
    const [a, b] = [points[0], points[points.length - 1]];
    if (a[0] === b[0] && a[1] === b[1]) points.pop(); // "z" closes it
  }
  if (points.length < 3) return "";
  let d = `M${fmt(points[0][0])} ${fmt(points[0][1])}l`;
  for (let i = 1; i < points.length; i++) {
    const sx = fmt(round(points[i][0] - points[i - 1][0]));
    const sy = fmt(round(points[i][1] - points[i - 1][1]));
    // SVG path grammar: a minus sign separates numbers by itself.
    d += (i > 1 && !sx.startsWith("-") ? " " : "") + sx + (sy.startsWith("-") ? "" : " ") + sy;
  }
  return d + "z";
}

// lon -180..180 -> x 0..360, lat 90..-90 -> y 0..180
const projection = d3.geoEquirectangular().scale(180 / Math.PI).translate([180, 90]).precision(0.1);
const rings = [];
let ring = null;
const context = {
  moveTo(x, y) { ring = [[x, y]]; rings.push(ring); },
  lineTo(x, y) { ring.push([x, y]); },
  closePath() { ring = null; },
  arc() {},
};
d3.geoPath(projection, context)(topojson.feature(land, land.objects.land));
const parts = rings.map(ringPath).filter(Boolean);

process.stdout.write(
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180" width="720" height="360" preserveAspectRatio="xMidYMid meet">\n` +
  `<title>World land, Natural Earth 110m (public domain), equirectangular: x = lon + 180, y = 90 - lat</title>\n` +
  `<path fill="#cfd8e3" fill-rule="evenodd" stroke="#9fb0c3" stroke-width=".2" stroke-linejoin="round" d="${parts.join("")}"/>\n` +
  `</svg>\n`,
);
