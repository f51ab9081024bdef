// FaceTrail: the examiner's forms. A dissimilar mark asks for its explanation (the server insists too).
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-checklist] tr[data-characteristic]").forEach(function (row) {
    const hint = row.querySelector("[data-explanation]");
    const text = row.querySelector("[data-comment]");
    if (!hint || !text) return;
    function update() {
      const checked = row.querySelector("input[data-mark]:checked");
      const dissimilar = !!checked && checked.value === "dissimilar";
      hint.hidden = !dissimilar;
      text.required = dissimilar;
      text.placeholder = dissimilar ? "Explain the difference (required)" : "";
      row.classList.toggle("dissimilar", dissimilar);
    }
    row.querySelectorAll("input[data-mark]").forEach(function (input) { input.addEventListener("change", update); });
    update();
  });
});
