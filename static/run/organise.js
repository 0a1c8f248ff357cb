// What people write about a run, on its page: the name, tags and note (the Edit dialog), Archive/Unarchive, and Delete
// behind a confirmation. All through PATCH and DELETE /api/runs/{id}; the answer is shown as any run JSON is.
import { el, fetchJSON } from "../common.js";

const $ = (id) => document.getElementById(id);

const tagList = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);

export function showOrganise(run) {
  const tags = $("run-tags");
  const text = JSON.stringify([run.tags, run.archived]);
  if (tags.dataset.shown !== text) {
    tags.dataset.shown = text;
    tags.replaceChildren(...run.tags.map((t) => el("span", { class: "tag", text: t })),
      ...(run.archived ? [el("span", { class: "tag archived", text: "archived" })] : []));
  }
  $("run-note").textContent = run.note || "";
  $("run-note").hidden = !run.note;
  $("archive-button").textContent = run.archived ? "Unarchive" : "Archive";
}

// 422 detail, each message beside the field its loc names (["body", "tags", 2] is the tags field).
function showEditErrors(form, detail) {
  for (const error of Array.isArray(detail) ? detail : [{ loc: ["body", "name"], msg: String(detail) }]) {
    const name = (error.loc || []).find((part) => form.querySelector(`.field-error[data-field="${part}"]`)) || "name";
    const slot = form.querySelector(`.field-error[data-field="${name}"]`);
    slot.textContent = String(error.msg || "invalid").replace(/^Value error, /, "");
  }
}

export function setupOrganise(runId, getRun, onRun) {
  const patch = (body) => fetchJSON(`/api/runs/${runId}`, { method: "PATCH", body: JSON.stringify(body) });
  const editDialog = $("edit-dialog"), form = $("edit-form");

  $("edit-button").addEventListener("click", () => {
    const run = getRun();
    if (!run) return;
    form.elements.name.value = run.name;
    form.elements.tags.value = run.tags.join(", ");
    form.elements.note.value = run.note || "";
    form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
    editDialog.showModal();
  });
  $("edit-cancel").addEventListener("click", () => editDialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field-error").forEach((node) => { node.textContent = ""; });
    const body = { name: form.elements.name.value, tags: tagList(form.elements.tags.value), note: form.elements.note.value };
    try {
      onRun(await patch(body));
      editDialog.close();
    } catch (error) {
      showEditErrors(form, error.body && Array.isArray(error.body.detail) ? error.body.detail : error.message);
    }
  });

  $("archive-button").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      onRun(await patch({ archived: !getRun().archived }));
    } catch (error) {
      $("error").textContent = `archive failed: ${error.message}`;
      $("error").hidden = false;
    }
    button.disabled = false;
  });

  const deleteDialog = $("delete-dialog"), deleteError = $("delete-error");
  $("delete-button").addEventListener("click", () => {
    deleteError.hidden = true;
    $("delete-confirm").disabled = false;
    deleteDialog.showModal();
  });
  $("delete-cancel").addEventListener("click", () => deleteDialog.close());
  $("delete-confirm").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      await fetchJSON(`/api/runs/${runId}`, { method: "DELETE" });
      window.location.href = "/";
    } catch (error) {  // 409 while it is running: the server says why
      deleteError.textContent = `Not deleted: ${error.message}`;
      deleteError.hidden = false;
    }
  });
}
