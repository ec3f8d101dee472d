// Login: with the admin Ed25519 key file (PKCS#8 PEM, as written at first
// start), signed in the browser with WebCrypto so the private key never
// leaves it; or, where the server allows it, with the master key.
import { h, clear, field, errorMessage, message } from './dom.js';
import { post } from './api.js';

const b64url = bytes => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

function pemToDer(pem) {
  const match = pem.match(/-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/);
  if (!match) throw new Error('This file is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----).');
  const binary = atob(match[1].replace(/\s+/g, ''));
  return Uint8Array.from(binary, c => c.charCodeAt(0));
}

/** Signs the server's challenge with the key in `pem`; returns the verify answer. */
export async function loginWithKeyFile(pem) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new Error('Key login needs a secure context: open the dashboard over HTTPS or on localhost (or use the master key).');
  }
  const der = pemToDer(pem);
  const algorithm = { name: 'Ed25519' };
  let publicKey;
  try {
    // Imported extractable only to read its public half (JWK `x`, base64url
    // of the 32-byte key: the form /auth/challenge takes), then dropped.
    const extractable = await crypto.subtle.importKey('pkcs8', der, algorithm, true, ['sign']);
    publicKey = (await crypto.subtle.exportKey('jwk', extractable)).x;
  } catch (error) {
    throw new Error(`The browser could not read this Ed25519 key (${error.message || error.name}).`);
  }
  const signingKey = await crypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  const challenge = await post('/auth/challenge', { public_key: publicKey });
  const signature = await crypto.subtle.sign(algorithm, signingKey, new TextEncoder().encode(challenge.message));
  return post('/auth/verify', {
    public_key: publicKey, nonce: challenge.nonce, signature: b64url(signature), cookie: true,
  });
}

export function renderLogin(root, onLoggedIn, notice) {
  const status = h('div', { 'aria-live': 'polite' });
  const file = h('input', { type: 'file', name: 'key_file', accept: '.key,.pem,text/plain' });
  const keyForm = h('form', {
    on: {
      submit: async event => {
        event.preventDefault();
        clear(status, message('info', 'Signing in…'));
        try {
          if (!file.files.length) throw new Error('Choose your admin key file first.');
          const session = await loginWithKeyFile(await file.files[0].text());
          onLoggedIn(session);
        } catch (error) {
          clear(status, errorMessage(error));
        }
      },
    },
  },
  field('Admin key file', file),
  h('p', { class: 'muted' }, 'The PKCS#8 PEM file written at first start (data/admin_ed25519.key), or another registered admin key. It is read and used for signing only in this browser.'),
  h('button', { type: 'submit', class: 'primary' }, 'Log in with key file'));

  const masterKey = h('input', { type: 'password', name: 'master_key', autocomplete: 'current-password' });
  const masterForm = h('form', {
    on: {
      submit: async event => {
        event.preventDefault();
        clear(status);
        try {
          onLoggedIn(await post('/auth/master', { master_key: masterKey.value }));
        } catch (error) {
          clear(status, errorMessage(error));
        }
      },
    },
  },
  field('Master key', masterKey),
  h('button', { type: 'submit' }, 'Log in with master key'));

  clear(root, h('main', { class: 'login' },
    h('div', { class: 'panel' },
      h('h1', {}, 'Switchyard — log in'),
      notice ? message('info', notice) : null,
      keyForm,
      h('details', {}, h('summary', {}, 'Use the master key instead (where enabled)'), masterForm),
      status)));
}
