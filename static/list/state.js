// The run list's state: the runs last fetched, and the filters, the sort and the view as the URL query holds them, so a
// reload or a shared link shows the same list. Defaults are left out of the URL.
import { COLUMN } from "./columns.js";

const DEFAULTS = { q: "", status: "", dataset: "", tag: "", archived: "", config: "", sort: "created", dir: "desc", view: "list" };
export const state = { ...DEFAULTS };
export let allRuns = [];

export function setRuns(runs) {
  allRuns = runs;
}

export function readURL() {
  const params = new URLSearchParams(location.search);
  for (const key of Object.keys(DEFAULTS)) state[key] = params.get(key) ?? DEFAULTS[key];
  if (!COLUMN[state.sort]) state.sort = DEFAULTS.sort;
  if (!["asc", "desc"].includes(state.dir)) state.dir = DEFAULTS.dir;
  if (!["list", "table"].includes(state.view)) state.view = DEFAULTS.view;
}

export function writeURL() {
  const params = new URLSearchParams(location.search);  // other parameters (e.g. ?clone=) stay
  for (const [key, value] of Object.entries(state)) {
    if (value === DEFAULTS[key]) params.delete(key); else params.set(key, value);
  }
  const query = params.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
}
