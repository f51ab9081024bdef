// FaceTrail: passkeys (WebAuthn) on the sign-in, second-factor and passkeys pages. Buttons carry
// data-passkey="register" | "second-factor" | "sign-in"; the server checks everything (webauthn package).
"use strict";

function b64uToBuf(text) {
  let s = text.replace(/-/g, "+").replace(/_/g, "/");
  while (s.length % 4) s += "=";
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bufToB64u(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function postJson(path, body, csrf) {
  const headers = { "content-type": "application/json" };
  if (csrf) headers["x-csrf-token"] = csrf;
  const r = await fetch(path, { method: "POST", headers: headers, body: JSON.stringify(body || {}), credentials: "same-origin" });
  const data = await r.json().catch(function () { return {}; });
  if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
  return data;
}

function credentialJson(c) {
  const out = { id: c.id, rawId: bufToB64u(c.rawId), type: c.type, clientExtensionResults: {}, response: {} };
  out.response.clientDataJSON = bufToB64u(c.response.clientDataJSON);
  if (c.response.attestationObject) {
    out.response.attestationObject = bufToB64u(c.response.attestationObject);
    if (c.response.getTransports) out.response.transports = c.response.getTransports();
  } else {
    out.response.authenticatorData = bufToB64u(c.response.authenticatorData);
    out.response.signature = bufToB64u(c.response.signature);
    if (c.response.userHandle) out.response.userHandle = bufToB64u(c.response.userHandle);
  }
  if (c.authenticatorAttachment) out.authenticatorAttachment = c.authenticatorAttachment;
  return out;
}

async function registerPasskey(button) {
  const name = document.getElementById("passkey-name").value.trim();
  if (!name) throw new Error("name the passkey first");
  const options = await postJson("/api/v1/auth/passkeys/register/options", {}, button.dataset.csrf);
  options.challenge = b64uToBuf(options.challenge);
  options.user.id = b64uToBuf(options.user.id);
  (options.excludeCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
  const created = await navigator.credentials.create({ publicKey: options });
  await postJson("/api/v1/auth/passkeys", { name: name, credential: credentialJson(created) }, button.dataset.csrf);
  window.location.href = "/passkeys?done=added";
}

async function usePasskey(optionsPath, finishPath, csrf, next) {
  const options = await postJson(optionsPath, {}, csrf);
  options.challenge = b64uToBuf(options.challenge);
  (options.allowCredentials || []).forEach(function (c) { c.id = b64uToBuf(c.id); });
  const got = await navigator.credentials.get({ publicKey: options });
  await postJson(finishPath, { credential: credentialJson(got) }, csrf);
  window.location.href = next || "/";
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    button.hidden = !window.PublicKeyCredential;
    button.addEventListener("click", async function (event) {
      event.preventDefault();
      const status = document.getElementById("passkey-status");
      try {
        const kind = button.dataset.passkey;
        if (kind === "register") await registerPasskey(button);
        else if (kind === "second-factor") {
          await usePasskey("/api/v1/auth/passkeys/assert/options", "/api/v1/auth/passkeys/assert", button.dataset.csrf, button.dataset.next);
        } else {
          await usePasskey("/api/v1/auth/passkeys/login/options", "/api/v1/auth/passkeys/login", null, button.dataset.next);
        }
      } catch (error) {
        if (status) { status.textContent = "Passkey: " + error.message; status.hidden = false; }
      }
    });
  });
});
