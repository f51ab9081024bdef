// FaceTrail: small progressive enhancements. Every page works without this file.
"use strict";

// Drag-and-drop onto a file input's zone, with a preview of a single image.
function setUpDropzones() {
  document.querySelectorAll("[data-dropzone]").forEach(function (zone) {
    const input = zone.querySelector("input[type=file]");
    const preview = zone.querySelector(".drop-preview");
    if (!input) return;
    function showPreview() {
      if (!preview || !input.files || input.files.length !== 1) return;
      const url = URL.createObjectURL(input.files[0]);
      preview.src = url;
      preview.hidden = false;
    }
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    input.addEventListener("change", function () {
      showPreview();
      const hint = zone.querySelector(".hint");
      if (hint && input.files) hint.textContent = input.files.length + " file(s) chosen";
    });
  });
}

// A visible "working" indicator while a long form (upload, enrolment) is processed by the server.
function setUpProgress() {
  document.querySelectorAll("form[data-progress]").forEach(function (form) {
    form.addEventListener("submit", function () {
      const box = document.getElementById(form.getAttribute("data-progress"));
      if (!box) return;
      const files = form.querySelectorAll("input[type=file]");
      let count = 0;
      files.forEach(function (f) { count += f.files ? f.files.length : 0; });
      const text = box.querySelector(".progress-text");
      if (text && count) text.textContent = "Uploading and processing " + count + " file(s)… this page updates when done.";
      box.hidden = false;
      const button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; }
    });
  });
}

// Confirmation for destructive actions (forms marked data-confirm).
function setUpConfirm() {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
}

// Copy a one-time secret to the clipboard.
function setUpCopy() {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      const target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) return;
      navigator.clipboard.writeText(target.textContent.trim()).then(function () { button.textContent = "Copied"; });
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setUpDropzones();
  setUpProgress();
  setUpConfirm();
  setUpCopy();
});
