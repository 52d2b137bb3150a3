"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const data = document.body.dataset;
  const face = $("face"), seedEl = $("seed"), status = $("status"), newFace = $("new-face");
  let objectUrl = null;

  const qs = (params) => new URLSearchParams(params).toString();
  const modelParam = () => (data.multi ? { model: data.model } : {});
  const variety = $("variety"), upscale = $("upscale");
  // Attribute edits: one slider per edit of the model; the non-zero ones travel as edit=NAME:AMOUNT,…
  const sliders = Array.from(document.querySelectorAll(".edit-slider"));
  const editText = () => sliders.filter((s) => Number(s.value) !== 0)
    .map((s) => s.dataset.edit + ":" + Number(s.value)).join(",");
  const look = () => ({ truncation: variety.value, ...(editText() ? { edit: editText() } : {}) });
  // What the permalink must name to show this exact face: anything not at its default.
  const pageParams = () => ({
    ...modelParam(),
    ...(Number(variety.value) !== Number(data.defaultTruncation) ? look() : {}),
    ...(upscale.value !== "lanczos" ? { resample: upscale.value } : {}),
    ...(editText() ? { edit: editText() } : {}),
  });
  const faceUrl = (seed) => "/api/face.png?" + qs({
    ...(seed === null ? {} : { seed }), model: data.model, size: data.size, resample: upscale.value,
    ...look() });

  function showSeed(seed) {
    seedEl.textContent = seed;
    $("permalink").href = "/?" + qs({ seed, ...pageParams() });
    $("download").href = "/api/face.png?" + qs({ seed, model: data.model, ...look() });
    $("grid-link").href = "/api/grid.png?" + qs({ n: 16, seed, model: data.model, ...look() });
    $("walk-from").value = seed;
  }

  // Swap in the face of `seed` (null: a new random one) as the current look; returns its seed.
  async function loadFace(seed) {
    const resp = await fetch(faceUrl(seed), { cache: "no-store" });
    if (!resp.ok) throw new Error(await errorText(resp));
    const url = URL.createObjectURL(await resp.blob());
    face.src = url;
    await face.decode();  // swap the seed text only once the new face is on screen
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = url;
    const crisp = upscale.value === "nearest";
    face.className = $("walk").className = crisp ? "crisp" : "smooth";
    $("upscale-note").textContent = data.native + "×" + data.native + " px face shown at " + data.size +
      " px with " + (crisp ? "crisp pixels (nearest neighbour)" : "smooth Lanczos upscaling");
    return resp.headers.get("X-Seed");
  }

  async function errorText(resp) {
    try { return (await resp.json()).error || resp.statusText; } catch { return resp.statusText; }
  }

  // New face without a page load: the server picks the seed and names it in X-Seed.
  newFace.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (newFace.getAttribute("aria-busy") === "true") return;
    newFace.setAttribute("aria-busy", "true");
    status.textContent = "";
    resetSliders();  // a new face starts unedited
    try {
      const seed = await loadFace(null);  // the server picks the seed and names it in X-Seed
      showSeed(seed);
      history.pushState({ seed }, "", "/?" + qs({ seed, ...pageParams() }));
    } catch (err) {
      status.textContent = "Could not draw a face: " + err.message;
    } finally {
      newFace.removeAttribute("aria-busy");
    }
  });

  // Variety and upscaling redraw the same seed in place and keep the permalink exact.
  for (const control of [variety, upscale]) {
    control.addEventListener("change", async () => {
      status.textContent = "";
      const seed = seedEl.textContent;
      try {
        await loadFace(seed);
        showSeed(seed);
        history.replaceState({ seed }, "", "/?" + qs({ seed, ...pageParams() }));
      } catch (err) {
        status.textContent = "Could not redraw the face: " + err.message;
      }
    });
  }
  function resetSliders() {
    for (const s of sliders) {
      s.value = "0";
      $(s.id + "-value").textContent = "0";
    }
  }

  // Redraw the same seed with the sliders' edits; the URL stays a permalink of seed + edits.
  async function redraw() {
    status.textContent = "";
    const seed = seedEl.textContent;
    try {
      await loadFace(seed);
      showSeed(seed);
      history.replaceState({ seed }, "", "/?" + qs({ seed, ...pageParams() }));
    } catch (err) {
      status.textContent = "Could not edit the face: " + err.message;
    }
  }
  for (const s of sliders) {
    s.addEventListener("input", () => { $(s.id + "-value").textContent = Number(s.value); });
    s.addEventListener("change", redraw);  // on release, not on every step of a drag
  }
  const reset = $("edit-reset");
  if (reset) reset.addEventListener("click", () => { resetSliders(); redraw(); });

  // Back/forward land on a permalink URL; let the server render that face.
  window.addEventListener("popstate", () => location.reload());

  const modelSelect = $("model");
  if (modelSelect) modelSelect.addEventListener("change", () => $("model-form").submit());

  const walk = $("walk");
  $("walk-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    const url = "/api/interpolate.gif?" + qs({
      from: $("walk-from").value.trim(), to: $("walk-to").value.trim(),
      frames: $("walk-frames").value, model: data.model, size: data.walkSize,
      resample: upscale.value, ...look(),
    });
    $("walk-go").disabled = true;
    try {
      const resp = await fetch(url);
      if (!resp.ok) throw new Error(await errorText(resp));
      if (walk.src.startsWith("blob:")) URL.revokeObjectURL(walk.src);
      walk.src = URL.createObjectURL(await resp.blob());
      walk.hidden = false;
    } catch (err) {
      status.textContent = "Could not walk: " + err.message;
    } finally {
      $("walk-go").disabled = false;
    }
  });
})();
