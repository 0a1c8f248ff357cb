// Which runs the list shows and in what order: filtered and sorted here (the list is small), by the state the URL holds.
import { COLUMN } from "./columns.js";
import { allRuns, state } from "./state.js";

// The config filter: terms like `lr_d=0.001 batch_size>64 dataset=mnist` (`==` is `=`), all of which a run's config
// must meet. Returns {tests: [run -> bool], error: the first term it cannot use, in words}.
const CONFIG_TERM = /^([A-Za-z_][\w.]*)(>=|<=|==|=|>|<)(.+)$/;
function parseConfigFilter(text, runs) {
  const keys = new Set(runs.flatMap((r) => Object.keys(r.config)));
  const tests = [];
  for (const term of text.trim().split(/\s+/).filter(Boolean)) {
    const m = CONFIG_TERM.exec(term);
    if (!m || /^[=<>!]/.test(m[3])) return { tests, error: `"${term}": write key=value, key>value or key<value` };
    const [, key, written, value] = m;
    const op = written === "==" ? "=" : written;
    if (!keys.has(key)) return { tests, error: `"${key}": no run has this config key` };
    const number = value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : null;
    if (op !== "=" && number === null) return { tests, error: `"${term}": ${op} needs a number` };
    const compare = { "=": (a, b) => a === b, ">": (a, b) => a > b, "<": (a, b) => a < b, ">=": (a, b) => a >= b, "<=": (a, b) => a <= b }[op];
    tests.push((run) => {
      const have = run.config[key];
      if (number !== null && typeof have === "number") return compare(have, number);
      return op === "=" && String(have ?? "").toLowerCase() === value.toLowerCase();
    });
  }
  return { tests, error: "" };
}
let configFilter = { text: null, runs: null, tests: [], error: "" };  // parsed again when the text or the runs change

function configTests() {
  if (configFilter.text !== state.config || configFilter.runs !== allRuns) {
    configFilter = { text: state.config, runs: allRuns, ...parseConfigFilter(state.config, allRuns) };
  }
  return configFilter.tests;
}

// Why the config filter cannot be used as written ("" when it can), as of the last shownRuns().
export const configError = () => configFilter.error;

function matches(run) {
  if (!configTests().every((test) => test(run))) return false;
  if (state.archived === "" && run.archived) return false;
  if (state.archived === "only" && !run.archived) return false;
  if (state.status && run.status !== state.status) return false;
  if (state.dataset && run.config.dataset !== state.dataset) return false;
  if (state.tag && !run.tags.includes(state.tag)) return false;
  const needle = state.q.trim().toLowerCase();
  return !needle || [run.name, ...run.tags, run.note || ""].join("\n").toLowerCase().includes(needle);
}

// Missing values sort last whichever the direction; ties keep the newest first.
function compareRuns(a, b) {
  const value = COLUMN[state.sort].value;
  const va = value(a), vb = value(b);
  const missingA = va === null || va === undefined, missingB = vb === null || vb === undefined;
  if (missingA || missingB) return missingA && missingB ? b.id - a.id : missingA ? 1 : -1;
  const order = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb));
  return (state.dir === "asc" ? order : -order) || b.id - a.id;
}

export function shownRuns() {
  return allRuns.filter(matches).sort(compareRuns);
}
