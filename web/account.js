import { $, api, showError } from './app.js';

const when = (seconds) => new Date(seconds * 1000).toLocaleString();

function row(cells, action) {
  const tr = document.createElement('tr');
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement('td');
  if (action) td.append(action);
  tr.append(td);
  return tr;
}

function button(label, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.className = className;
  b.addEventListener('click', onClick);
  return b;
}

async function load() {
  showError('');
  let account;
  try {
    await api('GET', '/api/v1/session');  // also picks up the CSRF token
    account = await api('GET', '/api/v1/account');
  } catch (e) {
    if (e.status === 401) {
      $('who').textContent = 'You are not logged in. ';
      const a = document.createElement('a');
      a.href = '/login';
      a.textContent = 'Log in';
      $('who').append(a);
      $('details').classList.add('hidden');
      return;
    }
    showError(e.message);
    return;
  }
  $('who').textContent = `Logged in as ${account.user}.`;
  $('details').classList.remove('hidden');
  $('faces').replaceChildren(...account.faces.map((f) => row([when(f.created_at), f.model],
    button('Remove', 'secondary', async () => {
      try { await api('DELETE', `/api/v1/account/faces/${f.id}`); load(); } catch (e) { showError(e.message); }
    }))));
  $('sessions').replaceChildren(...account.sessions.map((s) => row(
    [when(s.created_at) + (s.current ? ' (this one)' : ''), s.address, s.kind],
    s.current ? null : button('End', 'secondary', async () => {
      try { await api('DELETE', `/api/v1/account/sessions/${s.id}`); load(); } catch (e) { showError(e.message); }
    }))));
}

$('new-code').addEventListener('click', async () => {
  try {
    const r = await api('POST', '/api/v1/account/recovery-code');
    $('code').textContent = `Your new recovery code (shown once): ${r.recovery_code}`;
    $('code').classList.remove('hidden');
  } catch (e) { showError(e.message); }
});

$('logout').addEventListener('click', async () => {
  try { await api('POST', '/api/v1/logout'); window.location.href = '/'; } catch (e) { showError(e.message); }
});

$('delete').addEventListener('click', async () => {
  if (!window.confirm('Delete your account and all your faces? This cannot be undone.')) return;
  try { await api('DELETE', '/api/v1/account'); window.location.href = '/'; } catch (e) { showError(e.message); }
});

load();
