// FaceTrail: the examiner's side-by-side comparison (no inline script anywhere: the CSP forbids it).
//
// Two panes, probe and candidate, each drawn on a canvas from the full-resolution image: zoom (wheel, buttons,
// 1:1 for the real pixels), pan (drag, arrow keys), rotate and mirror; zoom and pan synchronised or independent.
// Plain side by side is the default: no gridlines, nothing drawn over the faces. After the examiner marks both
// eyes on both images, a third view superimposes them with the similarity transform (scale, rotation,
// translation) that maps the candidate's eyes onto the probe's: an opacity overlay or a wipe (curtain).
// A click (or drag) in "pin a note" mode pins a note to a region of an image; the checklist form carries it.
// The enhancement panel asks the server to apply one logged step to a copy; the original is one click away.
// Nothing here sees or computes a score: the page has none before the examiner's conclusion.
"use strict";

(function () {
  const root = document.querySelector("[data-comparison]");
  if (!root) return;

  const MIN_ZOOM = 0.1, MAX_ZOOM = 64, STEP = 1.25;
  const DPR = window.devicePixelRatio || 1;

  // ---------------------------------------------------------------- a view: zoom, pan, rotation, mirror
  function Viewer(pane, draw) {
    this.pane = pane;
    this.canvas = pane.querySelector("canvas");
    this.ctx = this.canvas.getContext("2d");
    this.draw = draw; // draw(ctx, viewer): content in content coordinates, transform already set
    this.width = 0; this.height = 0; // content size (image pixels)
    this.zoom = 1; // relative to "fit"
    this.tx = 0; this.ty = 0; // pan, in canvas CSS pixels
    this.rotation = 0; // degrees, clockwise
    this.mirror = false;
    this.marks = []; // [{x, y, label}] in content coordinates (the eye marks)
    this.regions = []; // [{x, y, w, h, label}] in content coordinates (pinned notes)
  }
  Viewer.prototype.resize = function () {
    const w = Math.max(1, Math.round(this.canvas.clientWidth * DPR));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * DPR));
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
  };
  Viewer.prototype.fitScale = function () {
    if (!this.width || !this.height) return 1;
    const cw = this.canvas.width / DPR, ch = this.canvas.height / DPR;
    const rotated = Math.abs(Math.round(this.rotation / 90)) % 2 === 1;
    const w = rotated ? this.height : this.width, h = rotated ? this.width : this.height;
    return Math.min(cw / w, ch / h);
  };
  Viewer.prototype.scale = function () { return this.fitScale() * this.zoom; };
  // content coordinates → canvas CSS pixels
  Viewer.prototype.matrix = function () {
    const cw = this.canvas.width / DPR, ch = this.canvas.height / DPR, s = this.scale();
    return new DOMMatrix()
      .translate(cw / 2 + this.tx, ch / 2 + this.ty)
      .rotate(this.rotation)
      .scale(this.mirror ? -s : s, s)
      .translate(-this.width / 2, -this.height / 2);
  };
  Viewer.prototype.toContent = function (x, y) {
    const p = this.matrix().inverse().transformPoint(new DOMPoint(x, y));
    return { x: p.x, y: p.y };
  };
  Viewer.prototype.render = function () {
    this.resize();
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.width && this.height) {
      const m = new DOMMatrix().scale(DPR, DPR).multiply(this.matrix());
      ctx.setTransform(m);
      // past 1:1 the examiner sees the real pixels, not a smoothed guess
      ctx.imageSmoothingEnabled = this.scale() < 1.5;
      this.draw(ctx, this, m);
      ctx.setTransform(DPR, 0, 0, DPR, 0, 0);
      this.drawMarks(ctx);
    }
    const c = this.canvas.dataset;
    c.zoom = this.zoom.toFixed(4);
    c.rotation = String(this.rotation);
    c.mirror = String(this.mirror);
    c.pan = Math.round(this.tx) + "," + Math.round(this.ty);
  };
  Viewer.prototype.drawMarks = function (ctx) {
    const m = this.matrix();
    ctx.lineWidth = 2;
    this.regions.forEach(function (r) {
      const a = m.transformPoint(new DOMPoint(r.x, r.y)), b = m.transformPoint(new DOMPoint(r.x + r.w, r.y + r.h));
      ctx.strokeStyle = "#ffbf47";
      ctx.strokeRect(Math.min(a.x, b.x), Math.min(a.y, b.y), Math.abs(b.x - a.x), Math.abs(b.y - a.y));
      ctx.fillStyle = "#ffbf47";
      ctx.font = "bold 13px system-ui, sans-serif";
      ctx.fillText(r.label, Math.min(a.x, b.x) + 3, Math.min(a.y, b.y) - 4);
    });
    this.marks.forEach(function (p) {
      const q = m.transformPoint(new DOMPoint(p.x, p.y));
      ctx.strokeStyle = "#00e5ff";
      ctx.beginPath();
      ctx.moveTo(q.x - 9, q.y); ctx.lineTo(q.x + 9, q.y);
      ctx.moveTo(q.x, q.y - 9); ctx.lineTo(q.x, q.y + 9);
      ctx.stroke();
    });
  };
  Viewer.prototype.zoomBy = function (factor, cx, cy) {
    const next = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    const f = next / this.zoom;
    if (cx === undefined) { cx = this.canvas.clientWidth / 2; cy = this.canvas.clientHeight / 2; }
    // keep the point under the cursor where it is
    const ox = cx - this.canvas.clientWidth / 2, oy = cy - this.canvas.clientHeight / 2;
    this.tx = ox - (ox - this.tx) * f;
    this.ty = oy - (oy - this.ty) * f;
    this.zoom = next;
  };
  Viewer.prototype.actualPixels = function () { this.zoom = 1 / this.fitScale(); this.tx = 0; this.ty = 0; };
  Viewer.prototype.reset = function () { this.zoom = 1; this.tx = 0; this.ty = 0; this.rotation = 0; this.mirror = false; };

  // ---------------------------------------------------------------- the images
  function ImageSource(pane) {
    this.pane = pane;
    this.original = { src: pane.dataset.src, sha256: pane.dataset.sha256 || "", id: pane.dataset.imageId || "" };
    this.enhanced = null; // {src, sha256, log}
    this.showing = "original";
    this.img = null;
  }
  ImageSource.prototype.current = function () {
    return this.showing === "enhanced" && this.enhanced ? this.enhanced : this.original;
  };
  ImageSource.prototype.load = function (onload) {
    const img = new Image();
    const self = this;
    img.decoding = "async";
    img.onload = function () { self.img = img; onload(img); };
    img.onerror = function () { self.pane.dataset.state = "error"; };
    img.src = this.current().src;
  };

  const syncBox = root.querySelector("[data-sync]");
  const panes = {};
  const sources = {};

  function imageDraw(name) {
    return function (ctx) {
      const img = sources[name].img;
      if (img) ctx.drawImage(img, 0, 0);
    };
  }

  ["probe", "candidate"].forEach(function (name) {
    const pane = root.querySelector('[data-pane="' + name + '"]');
    if (!pane) return;
    panes[name] = new Viewer(pane, imageDraw(name));
    sources[name] = new ImageSource(pane);
  });

  function showSource(name, keepView) {
    const v = panes[name], source = sources[name];
    source.load(function (img) {
      v.width = img.naturalWidth; v.height = img.naturalHeight;
      if (!keepView) v.reset();
      v.pane.dataset.state = "ready";
      v.pane.dataset.showing = source.showing;
      v.pane.dataset.naturalSize = img.naturalWidth + "x" + img.naturalHeight;
      refreshRegions();
      renderAll();
    });
    const cur = source.current();
    const hash = v.pane.querySelector("[data-hash]");
    if (hash) hash.textContent = cur.sha256;
    const badge = v.pane.querySelector("[data-enhanced-badge]");
    if (badge) badge.hidden = source.showing !== "enhanced";
    const toggle = v.pane.querySelector("[data-show-original]");
    if (toggle) {
      toggle.hidden = !source.enhanced;
      toggle.textContent = source.showing === "enhanced" ? "Show original" : "Show enhanced";
    }
  }

  // ---------------------------------------------------------------- alignment on the eyes and superimposition
  const composite = root.querySelector('[data-pane="composite"]');
  const alignButton = root.querySelector("[data-align]");
  const alignStatus = root.querySelector("[data-align-status]");
  const modeInputs = root.querySelectorAll("input[name=display-mode]");
  const opacity = root.querySelector("[data-opacity]");
  const wipe = root.querySelector("[data-wipe]");
  const STEPS = [
    ["probe", "Click the eye on the probe image's left."],
    ["probe", "Click the eye on the probe image's right."],
    ["candidate", "Click the eye on the candidate image's left."],
    ["candidate", "Click the eye on the candidate image's right."],
  ];
  const alignment = { step: -1, transform: null };

  // The similarity transform (no shear, no reflection) mapping the candidate's two eye points onto the probe's.
  function similarity(c1, c2, p1, p2) {
    const dcx = c2.x - c1.x, dcy = c2.y - c1.y, dpx = p2.x - p1.x, dpy = p2.y - p1.y;
    const lc = Math.hypot(dcx, dcy), lp = Math.hypot(dpx, dpy);
    if (lc < 1 || lp < 1) return null;
    const s = lp / lc, angle = Math.atan2(dpy, dpx) - Math.atan2(dcy, dcx);
    const a = s * Math.cos(angle), b = s * Math.sin(angle);
    // p = [a -b; b a] (c - c1) + p1
    return new DOMMatrix([a, b, -b, a, p1.x - (a * c1.x - b * c1.y), p1.y - (b * c1.x + a * c1.y)]);
  }

  function setAlignStatus(text) { if (alignStatus) alignStatus.textContent = text; }

  function clearAlignment(reason) {
    alignment.step = -1;
    alignment.transform = null;
    Object.keys(panes).forEach(function (n) { panes[n].marks = []; });
    modeInputs.forEach(function (input) { input.disabled = input.value !== "side"; if (input.value === "side") input.checked = true; });
    if (opacity) opacity.disabled = true;
    if (wipe) wipe.disabled = true;
    root.dataset.aligned = "false";
    if (eyesButton) eyesButton.disabled = true;
    setDisplayMode("side");
    if (reason) setAlignStatus(reason);
  }

  function eyeClick(name, point) {
    const step = STEPS[alignment.step];
    if (!step || step[0] !== name) return false;
    panes[name].marks.push({ x: point.x, y: point.y });
    alignment.step += 1;
    if (alignment.step < STEPS.length) {
      setAlignStatus(STEPS[alignment.step][1]);
    } else {
      const p = panes.probe.marks, c = panes.candidate.marks;
      alignment.transform = similarity(c[0], c[1], p[0], p[1]);
      alignment.step = -1;
      if (!alignment.transform) { clearAlignment("The two eye marks are too close together. Align again."); return true; }
      modeInputs.forEach(function (input) { input.disabled = false; });
      if (opacity) opacity.disabled = false;
      if (wipe) wipe.disabled = false;
      root.dataset.aligned = "true";
      if (eyesButton) eyesButton.disabled = false;
      const t = alignment.transform;
      setAlignStatus("Aligned on the eyes (scale " + Math.hypot(t.a, t.b).toFixed(3) + ", rotation " +
        (Math.atan2(t.b, t.a) * 180 / Math.PI).toFixed(1) + "°). Overlay and wipe are available.");
      if (alignButton) alignButton.setAttribute("aria-pressed", "false");
    }
    return true;
  }

  let compositeView = null;
  if (composite) {
    compositeView = new Viewer(composite, function (ctx, view, m) {
      const probe = sources.probe.img, cand = sources.candidate.img;
      if (!probe || !cand || !alignment.transform) return;
      const mode = root.dataset.displayMode;
      if (mode === "overlay") {
        ctx.globalAlpha = 1;
        ctx.drawImage(probe, 0, 0);
        ctx.globalAlpha = (opacity ? Number(opacity.value) : 50) / 100;
        ctx.setTransform(m.multiply(alignment.transform));
        ctx.drawImage(cand, 0, 0);
        ctx.globalAlpha = 1;
      } else if (mode === "wipe") {
        // the curtain is vertical on the screen: probe to its left, candidate to its right
        const x = view.canvas.width * (wipe ? Number(wipe.value) : 50) / 100;
        ctx.save();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.beginPath(); ctx.rect(0, 0, x, view.canvas.height); ctx.clip();
        ctx.setTransform(m);
        ctx.drawImage(probe, 0, 0);
        ctx.restore();
        ctx.save();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.beginPath(); ctx.rect(x, 0, view.canvas.width - x, view.canvas.height); ctx.clip();
        ctx.setTransform(m.multiply(alignment.transform));
        ctx.drawImage(cand, 0, 0);
        ctx.restore();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.fillStyle = "#ffbf47";
        ctx.fillRect(x - DPR, 0, 2 * DPR, view.canvas.height);
      }
    });
  }

  function setDisplayMode(mode) {
    root.dataset.displayMode = mode;
    const superimposed = mode !== "side";
    if (composite) composite.hidden = !superimposed;
    Object.keys(panes).forEach(function (n) { panes[n].pane.hidden = superimposed; });
    if (opacity) opacity.closest("[data-control]").hidden = mode !== "overlay";
    if (wipe) wipe.closest("[data-control]").hidden = mode !== "wipe";
    renderAll();
  }

  // ---------------------------------------------------------------- pinned notes (annotations)
  const editor = root.querySelector("[data-annotation-editor]") || document.querySelector("[data-annotation-editor]");
  const list = document.querySelector("[data-annotations]");
  const field = document.querySelector("[data-annotations-field]");
  const pinButton = root.querySelector("[data-pin]");
  let pinning = false;
  let draft = null;

  // an annotation names its image: the probe, or the candidate's photo by its index in the candidate's photos
  function imageKey(name) {
    return name === "probe" ? { image: "probe", photo: 0 } : { image: "candidate", photo: Number(sources.candidate.original.id || 0) };
  }

  function annotations() {
    if (!list) return [];
    return Array.from(list.querySelectorAll("[data-annotation]")).map(function (li) {
      const r = li.dataset.region.split(",").map(Number);
      return {
        image: li.dataset.image, photo: Number(li.dataset.photo || 0), component: li.dataset.component || null,
        region: { x: r[0], y: r[1], width: r[2], height: r[3] }, note: li.dataset.note,
      };
    });
  }

  function syncField() {
    if (field) field.value = JSON.stringify(annotations());
  }

  function refreshRegions() {
    const all = annotations();
    Object.keys(panes).forEach(function (name) {
      const v = panes[name], key = imageKey(name);
      // regions are kept in the original's pixels: shown only on images with the original's geometry
      const src = sources[name];
      const same = src.showing === "original" || (src.enhanced && src.enhanced.sameGeometry);
      v.regions = same ? all.filter(function (a) { return a.image === key.image && a.photo === key.photo; }).map(function (a, i) {
        return {
          x: a.region.x * v.width, y: a.region.y * v.height, w: a.region.width * v.width, h: a.region.height * v.height,
          label: a.component || String(i + 1),
        };
      }) : [];
    });
  }

  function addAnnotationItem(a) {
    const li = document.createElement("li");
    li.dataset.annotation = "";
    li.dataset.image = a.image;
    li.dataset.photo = String(a.photo);
    li.dataset.region = [a.region.x, a.region.y, a.region.width, a.region.height].map(function (n) { return n.toFixed(4); }).join(",");
    li.dataset.component = a.component || "";
    li.dataset.note = a.note;
    const label = document.createElement("span");
    label.textContent = (a.image === "probe" ? "Probe" : "Candidate photo " + (a.photo + 1)) + " · " + (a.componentLabel || a.component || "General") + ": " + a.note;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link-like";
    remove.dataset.removeAnnotation = "";
    remove.textContent = "Remove";
    li.appendChild(label);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(remove);
    list.appendChild(li);
  }

  function openEditor(name, a, b) {
    if (!editor) return;
    const v = panes[name];
    let x = Math.min(a.x, b.x), y = Math.min(a.y, b.y), w = Math.abs(b.x - a.x), h = Math.abs(b.y - a.y);
    if (w < 4 || h < 4) { // a click: a region around the point, 6% of the image's width
      const r = Math.max(v.width, v.height) * 0.03;
      x = a.x - r; y = a.y - r; w = 2 * r; h = 2 * r;
    }
    x = Math.max(0, x); y = Math.max(0, y);
    w = Math.min(v.width - x, w); h = Math.min(v.height - y, h);
    const key = imageKey(name);
    // fractions rounded down to 4 places, so that x + width never passes 1
    function frac(n) { return Math.floor(n * 10000) / 10000; }
    draft = { image: key.image, photo: key.photo, region: { x: frac(x / v.width), y: frac(y / v.height), width: frac(w / v.width), height: frac(h / v.height) } };
    editor.hidden = false;
    const where = editor.querySelector("[data-annotation-where]");
    if (where) {
      where.textContent = (name === "probe" ? "Probe" : "Candidate photo") + ", region at " +
        Math.round(x) + "," + Math.round(y) + " (" + Math.round(w) + "×" + Math.round(h) + " px)";
    }
    v.regions = v.regions.concat([{ x: x, y: y, w: w, h: h, label: "new" }]);
    renderAll();
    const note = editor.querySelector("textarea");
    if (note) note.focus();
  }

  if (editor) {
    editor.querySelector("[data-annotation-add]").addEventListener("click", function () {
      const note = editor.querySelector("textarea"), component = editor.querySelector("select");
      if (!draft || !note.value.trim()) { note.focus(); return; }
      draft.note = note.value.trim();
      draft.component = component && component.value ? component.value : null;
      draft.componentLabel = component ? component.options[component.selectedIndex].text : "";
      addAnnotationItem(draft);
      draft = null;
      note.value = "";
      editor.hidden = true;
      syncField();
      refreshRegions();
      renderAll();
    });
    editor.querySelector("[data-annotation-cancel]").addEventListener("click", function () {
      draft = null;
      editor.hidden = true;
      refreshRegions();
      renderAll();
    });
  }
  if (list) {
    list.addEventListener("click", function (event) {
      const button = event.target.closest("[data-remove-annotation]");
      if (!button) return;
      button.closest("[data-annotation]").remove();
      syncField();
      refreshRegions();
      renderAll();
    });
  }
  if (pinButton) {
    pinButton.addEventListener("click", function () {
      pinning = !pinning;
      pinButton.setAttribute("aria-pressed", String(pinning));
      root.dataset.pinning = String(pinning);
    });
  }

  // ---------------------------------------------------------------- measurements (observations only)
  const mList = document.querySelector("[data-measurements]");
  const mField = document.querySelector("[data-measurements-field]");
  const mEditor = document.querySelector("[data-measure-editor]");
  const eyesButton = document.querySelector("[data-measure-eyes]");

  function measurements() {
    if (!mList) return [];
    return Array.from(mList.querySelectorAll("[data-measurement]")).map(function (li) { return JSON.parse(li.dataset.json); });
  }
  function syncMeasurements() { if (mField) mField.value = JSON.stringify(measurements()); }
  function addMeasurement(m) {
    if (!mList) return;
    const li = document.createElement("li");
    li.dataset.measurement = "";
    li.dataset.json = JSON.stringify(m);
    const label = document.createElement("span");
    label.textContent = m.image + " · " + m.name + ": " + m.value + " " + m.unit + (m.note ? " — " + m.note : "");
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "link-like"; remove.dataset.removeMeasurement = ""; remove.textContent = "Remove";
    li.appendChild(label); li.appendChild(document.createTextNode(" ")); li.appendChild(remove);
    mList.appendChild(li);
    syncMeasurements();
  }
  if (mList) {
    mList.addEventListener("click", function (event) {
      const button = event.target.closest("[data-remove-measurement]");
      if (!button) return;
      button.closest("[data-measurement]").remove();
      syncMeasurements();
    });
  }
  if (mEditor) {
    mEditor.querySelector("[data-measure-add]").addEventListener("click", function () {
      const name = mEditor.querySelector("#measure-name"), value = mEditor.querySelector("#measure-value");
      if (!name.value.trim() || value.value === "" || !isFinite(Number(value.value))) { (name.value.trim() ? value : name).focus(); return; }
      addMeasurement({
        image: mEditor.querySelector("#measure-image").value, name: name.value.trim(), value: Number(value.value),
        unit: mEditor.querySelector("#measure-unit").value.trim(), note: mEditor.querySelector("#measure-note").value.trim(),
      });
      name.value = ""; value.value = "";
    });
  }
  if (eyesButton) {
    // the distance between the examiner's own eye marks, in each image's pixels: an observation to record
    eyesButton.addEventListener("click", function () {
      ["probe", "candidate"].forEach(function (name) {
        const m = panes[name].marks;
        if (m.length < 2) return;
        addMeasurement({
          image: name, name: "distance between the eye marks", value: Math.round(Math.hypot(m[1].x - m[0].x, m[1].y - m[0].y) * 10) / 10,
          unit: "px", note: "from the examiner's marks (alignment), " + (name === "candidate" ? "photo " + (Number(sources.candidate.original.id) + 1) : "probe"),
        });
      });
    });
  }

  // ---------------------------------------------------------------- pointer, wheel and keys on a pane
  function others(v) {
    if (!syncBox || !syncBox.checked) return [];
    return Object.keys(panes).map(function (n) { return panes[n]; }).filter(function (o) { return o !== v; });
  }

  function attach(v, name) {
    const canvas = v.canvas;
    let down = null;
    canvas.addEventListener("pointerdown", function (event) {
      canvas.setPointerCapture(event.pointerId);
      down = { x: event.offsetX, y: event.offsetY, tx: v.tx, ty: v.ty, moved: false };
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!down) return;
      const dx = event.offsetX - down.x, dy = event.offsetY - down.y;
      if (Math.hypot(dx, dy) > 3) down.moved = true;
      if (!down.moved || (pinning && name)) return; // a pinned region is drawn by dragging, not panned
      const ddx = down.tx + dx - v.tx, ddy = down.ty + dy - v.ty;
      v.tx += ddx; v.ty += ddy;
      others(v).forEach(function (o) { o.tx += ddx; o.ty += ddy; });
      renderAll();
    });
    canvas.addEventListener("pointerup", function (event) {
      if (!down) return;
      const start = down;
      down = null;
      if (!name) return;
      const a = v.toContent(start.x, start.y), b = v.toContent(event.offsetX, event.offsetY);
      if (!start.moved && alignment.step >= 0) {
        if (eyeClick(name, a)) renderAll();
        return;
      }
      if (pinning) {
        pinning = false;
        if (pinButton) pinButton.setAttribute("aria-pressed", "false");
        root.dataset.pinning = "false";
        openEditor(name, a, start.moved ? b : a);
      }
    });
    canvas.addEventListener("wheel", function (event) {
      event.preventDefault();
      const f = event.deltaY < 0 ? STEP : 1 / STEP;
      v.zoomBy(f, event.offsetX, event.offsetY);
      others(v).forEach(function (o) { o.zoomBy(f, event.offsetX, event.offsetY); });
      renderAll();
    }, { passive: false });
    canvas.addEventListener("keydown", function (event) {
      const moves = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
      if (moves[event.key]) {
        event.preventDefault();
        [v].concat(others(v)).forEach(function (o) { o.tx += moves[event.key][0]; o.ty += moves[event.key][1]; });
      } else if (event.key === "+" || event.key === "=") {
        [v].concat(others(v)).forEach(function (o) { o.zoomBy(STEP); });
      } else if (event.key === "-") {
        [v].concat(others(v)).forEach(function (o) { o.zoomBy(1 / STEP); });
      } else return;
      renderAll();
    });
  }

  Object.keys(panes).forEach(function (name) { attach(panes[name], name); });
  if (compositeView) attach(compositeView, null);

  // toolbar buttons: data-view-action on a pane's toolbar (data-for names the pane)
  root.addEventListener("click", function (event) {
    const button = event.target.closest("[data-view-action]");
    if (!button) return;
    const v = button.dataset.for === "composite" ? compositeView : panes[button.dataset.for];
    if (!v) return;
    const action = button.dataset.viewAction;
    const group = action === "zoom-in" || action === "zoom-out" || action === "fit" ? [v].concat(others(v)) : [v];
    group.forEach(function (o) {
      if (action === "zoom-in") o.zoomBy(STEP);
      else if (action === "zoom-out") o.zoomBy(1 / STEP);
      else if (action === "fit") { o.zoom = 1; o.tx = 0; o.ty = 0; }
      else if (action === "actual") o.actualPixels();
      else if (action === "rotate-left") o.rotation = (o.rotation - 90) % 360;
      else if (action === "rotate-right") o.rotation = (o.rotation + 90) % 360;
      else if (action === "mirror") { o.mirror = !o.mirror; button.setAttribute("aria-pressed", String(o.mirror)); }
      else if (action === "reset") o.reset();
    });
    const fine = v.pane.querySelector("[data-rotation]");
    if (fine) fine.value = String(v.rotation);
    renderAll();
  });
  root.querySelectorAll("[data-rotation]").forEach(function (input) {
    input.addEventListener("input", function () {
      const v = panes[input.dataset.for];
      if (!v) return;
      v.rotation = Number(input.value) || 0;
      renderAll();
    });
  });
  if (syncBox) {
    syncBox.addEventListener("change", function () {
      root.dataset.sync = String(syncBox.checked);
      if (syncBox.checked && panes.probe && panes.candidate) { // start together: the candidate follows the probe
        panes.candidate.zoom = panes.probe.zoom; panes.candidate.tx = panes.probe.tx; panes.candidate.ty = panes.probe.ty;
        renderAll();
      }
    });
    root.dataset.sync = String(syncBox.checked);
  }
  if (alignButton) {
    alignButton.addEventListener("click", function () {
      clearAlignment();
      alignment.step = 0;
      alignButton.setAttribute("aria-pressed", "true");
      setAlignStatus(STEPS[0][1]);
      renderAll();
    });
  }
  modeInputs.forEach(function (input) {
    input.addEventListener("change", function () { if (input.checked) setDisplayMode(input.value); });
  });
  [opacity, wipe].forEach(function (input) { if (input) input.addEventListener("input", renderAll); });

  // the candidate's enrolled photos: one at a time in the candidate pane
  root.querySelectorAll("[data-photo-src]").forEach(function (button) {
    button.addEventListener("click", function () {
      root.querySelectorAll("[data-photo-src]").forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
      button.setAttribute("aria-pressed", "true");
      const source = sources.candidate;
      source.original = { src: button.dataset.photoSrc, sha256: button.dataset.photoSha256 || "", id: button.dataset.photoId || "" };
      source.enhanced = null;
      source.showing = "original";
      const caption = panes.candidate.pane.querySelector("[data-photo-caption]");
      if (caption) caption.textContent = button.dataset.photoCaption || "";
      clearAlignment("The candidate photo changed: mark the eyes again to superimpose.");
      resetEnhancementLog("candidate");
      showSource("candidate");
    });
  });

  // ---------------------------------------------------------------- enhancement (server-side, logged)
  const panel = document.querySelector("[data-enhancement]");
  // the server's operations and their parameters (examination/enhance.py): [name, label, min, max, step, default]
  const PARAMS = {
    brightness: [["delta", "Brightness change (−100 … 100)", -100, 100, 1, 20]],
    contrast: [["factor", "Contrast factor (0.2 … 3)", 0.2, 3, 0.05, 1.3]],
    gamma: [["gamma", "Gamma (0.2 … 5)", 0.2, 5, 0.05, 1.4]],
    rotation: [["degrees", "Rotation, clockwise (90, 180 or 270°)", 90, 270, 90, 90]],
    crop: [["x", "Left (px)", 0, 100000, 1, 0], ["y", "Top (px)", 0, 100000, 1, 0],
      ["width", "Width (px)", 1, 100000, 1, 100], ["height", "Height (px)", 1, 100000, 1, 100]],
    sharpen: [["amount", "Sharpening amount (0.1 … 3)", 0.1, 3, 0.1, 1], ["sigma", "Radius σ (0.5 … 5)", 0.5, 5, 0.1, 1.5]],
    denoise: [["size", "Median filter size (3, 5 or 7)", 3, 7, 2, 3]],
  };
  const GEOMETRY = { rotation: true, crop: true };
  const logs = { probe: [], candidate: [] }; // the steps applied from this page, as the server logged them

  function resetEnhancementLog(name) {
    if (!panel) return;
    logs[name] = [];
    const log = panel.querySelector('[data-enhance-log="' + name + '"]');
    if (log) log.replaceChildren();
  }

  function showLog(name, entries) {
    const log = panel.querySelector('[data-enhance-log="' + name + '"]');
    if (!log) return;
    log.replaceChildren();
    entries.forEach(function (e) {
      const li = document.createElement("li");
      li.textContent = e.operation + " " + JSON.stringify(e.parameters || {}) + " — " + (e.purpose || "") +
        " (" + (e.user || "") + ", " + String(e.time || "").replace("T", " ").slice(0, 19) + " UTC) → " +
        String(e.sha256 || "").slice(0, 16) + "…";
      log.appendChild(li);
    });
  }

  if (panel && panel.dataset.api && panel.querySelector("form")) {
    const form = panel.querySelector("form");
    const opSelect = panel.querySelector("[data-enhance-operation]");
    const paramsBox = panel.querySelector("[data-enhance-params]");
    const status = panel.querySelector("[data-enhance-status]");
    function buildParams() {
      paramsBox.replaceChildren();
      (PARAMS[opSelect.value] || []).forEach(function (p) {
        const id = "enhance-" + p[0];
        const label = document.createElement("label");
        label.htmlFor = id; label.textContent = p[1];
        const input = document.createElement("input");
        input.type = "number"; input.id = id; input.name = p[0];
        input.min = String(p[2]); input.max = String(p[3]); input.step = String(p[4]); input.value = String(p[5]);
        input.required = true;
        paramsBox.appendChild(label); paramsBox.appendChild(input);
      });
    }
    opSelect.addEventListener("change", buildParams);
    buildParams();
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const name = form.querySelector("[name=target]").value;
      const source = sources[name];
      if (!source) return;
      const parameters = {};
      paramsBox.querySelectorAll("input").forEach(function (input) { parameters[input.name] = Number(input.value); });
      const parent = source.enhanced ? source.enhanced.sha256 : null; // null: the original
      const body = {
        image: name === "probe" ? "probe" : "candidate",
        handle: name === "probe" ? null : root.dataset.handle,
        photo: name === "probe" ? null : Number(source.original.id),
        parent_sha256: parent,
        operation: opSelect.value,
        parameters: parameters,
        purpose: form.querySelector("[name=purpose]").value,
      };
      status.textContent = "Applying to a copy…";
      fetch(panel.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": root.dataset.csrf },
        body: JSON.stringify(body),
      }).then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      }).then(function (result) {
        if (!result.ok) {
          status.textContent = "Refused: " + ((result.data.error && result.data.error.message) || "the step was not applied");
          return;
        }
        const d = result.data;
        const before = source.enhanced;
        logs[name].push({ operation: d.operation, parameters: d.parameters, purpose: d.purpose, user: d.user, time: d.created_at, sha256: d.sha256 });
        source.enhanced = {
          src: d.image_url, sha256: d.sha256, log: logs[name],
          sameGeometry: !GEOMETRY[body.operation] && (!before || before.sameGeometry),
        };
        source.showing = "enhanced";
        panes[name].pane.dataset.enhancedSha256 = d.sha256;
        status.textContent = "Applied to a copy: " + d.sha256 + " (the original " + (d.original_sha256 || source.original.sha256) + " is unchanged).";
        showLog(name, logs[name]);
        if (GEOMETRY[body.operation]) clearAlignment("The image's geometry changed: mark the eyes again to superimpose.");
        showSource(name, true);
      }).catch(function () { status.textContent = "The server could not be reached; nothing was applied."; });
    });
  }
  root.querySelectorAll("[data-show-original]").forEach(function (button) {
    button.addEventListener("click", function () {
      const name = button.dataset.for, source = sources[name];
      if (!source || !source.enhanced) return;
      source.showing = source.showing === "enhanced" ? "original" : "enhanced";
      showSource(name, true);
    });
  });

  // ---------------------------------------------------------------- start
  let pending = false;
  function renderAll() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      Object.keys(panes).forEach(function (n) { if (!panes[n].pane.hidden) panes[n].render(); });
      if (compositeView && !composite.hidden) {
        if (sources.probe.img) { compositeView.width = sources.probe.img.naturalWidth; compositeView.height = sources.probe.img.naturalHeight; }
        compositeView.render();
      }
      root.dataset.renders = String(Number(root.dataset.renders || 0) + 1);
    });
  }
  window.addEventListener("resize", renderAll);
  clearAlignment();
  syncField();
  syncMeasurements();
  Object.keys(panes).forEach(function (name) { showSource(name); });
})();
