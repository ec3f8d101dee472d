// The dashboard shell: who is logged in, the navigation, hash routes
// (#/overview, #/providers, ...), one module per page, logout.
import { h, clear, errorMessage } from './dom.js';
import { get, post, setCsrf, whenUnauthorized } from './api.js';
import { renderLogin } from './login.js';

const PAGES = [
  ['overview', 'Overview'],
  ['providers', 'Providers & keys'],
  ['tokens', 'Tokens'],
  ['users', 'Users'],
  ['logs', 'Request logs'],
  ['prices', 'Prices'],
  ['oplog', 'Operation log'],
];

const root = document.getElementById('root');
let session = null;
let cleanup = null;

function stopPage() {
  if (cleanup) {
    try { cleanup(); } catch { /* a page that failed to start */ }
    cleanup = null;
  }
}

function showLogin(notice) {
  stopPage();
  session = null;
  setCsrf(null);
  renderLogin(root, loggedIn => {
    session = loggedIn;
    setCsrf(loggedIn.csrf_token);
    if (!location.hash || location.hash === '#/') location.hash = '#/overview';
    renderShell();
  }, notice);
}

whenUnauthorized(() => showLogin('Your session has ended (expired, revoked or logged out). Log in again.'));

async function logout() {
  try { await post('/auth/logout'); } catch { /* gone already */ }
  showLogin('Logged out.');
}

async function renderShell() {
  stopPage();
  const name = (location.hash.replace(/^#\/?/, '').split('?')[0]) || 'overview';
  const page = PAGES.find(([id]) => id === name) ? name : 'overview';
  const main = h('main', { id: 'page' });
  clear(root,
    h('header', { class: 'top' },
      h('span', { class: 'brand' }, h('img', { src: '/ui/icon.svg', alt: '' }), 'Switchyard'),
      h('nav', { 'aria-label': 'Pages' }, PAGES.map(([id, label]) =>
        h('a', { href: `#/${id}`, 'aria-current': id === page ? 'page' : null }, label))),
      h('span', { class: 'who', title: 'Logged in as' }, session.actor || session.fingerprint || ''),
      h('button', { type: 'button', on: { click: logout } }, 'Log out')),
    main);
  try {
    const module = await import(`./pages/${page}.js`);
    cleanup = (await module.render(main)) || null;
  } catch (error) {
    if (error && error.status === 401) return;
    clear(main, errorMessage(error));
  }
}

window.addEventListener('hashchange', () => { if (session) renderShell(); });

async function start() {
  try {
    const current = await get('/auth/session', { quiet401: true });
    if (!current.csrf_token) {
      // A header credential cannot come from a page; only the cookie counts.
      showLogin();
      return;
    }
    session = current;
    setCsrf(current.csrf_token);
    renderShell();
  } catch (error) {
    if (error.status === 401) showLogin();
    else clear(root, errorMessage(error));
  }
}

start();
