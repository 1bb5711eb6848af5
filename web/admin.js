import { $, api, showError } from './app.js';

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function button(label, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.className = className;
  b.addEventListener('click', async () => {
    try { await onClick(); await load(); } catch (e) { showError(e.message); }
  });
  return b;
}

// The operating threshold and what the enrolled people say about it (issue 15).
function describeThreshold(r) {
  if (!r) return '';
  const base = r.base_threshold.toFixed(4);
  if (!r.population_threshold) return `Decision threshold ${base} (population estimate off).`;
  if (!r.usable) {
    return `Decision threshold ${base}, the recogniser's: ${r.users} people enrolled, too few to estimate their own.`;
  }
  const rate = (v) => (v === null ? 'unknown' : v.toExponential(1));
  const raised = r.operating_threshold > r.base_threshold;
  return `Decision threshold ${r.operating_threshold.toFixed(4)}` +
    (raised ? `, raised from ${base} for these ${r.users} people` : ` (the recogniser's; ${r.users} people)`) +
    `: estimated false-match rate ${rate(r.fmr_at_operating)} per claim, ${rate(r.fmr_at_base)} at ${base}.`;
}

async function load() {
  showError('');
  try {
    const session = await api('GET', '/api/v1/session');
    const q = encodeURIComponent($('q').value.trim());
    const [stats, users, audit] = await Promise.all([
      api('GET', '/api/v1/admin/stats'), api('GET', `/api/v1/admin/users?q=${q}`),
      api('GET', '/api/v1/admin/audit?limit=50')]);
    $('who').textContent = `Logged in as ${session.user} (administrator).`;
    $('panel').classList.remove('hidden');
    const day = Object.entries(stats.last_24h).map(([k, n]) => `${k} ${n}`).join(' · ') || 'nothing';
    $('stats').textContent = `${stats.users} accounts (${stats.disabled} disabled), ${stats.faces} faces. ${day}.`;
    $('recognition').textContent = describeThreshold(stats.recognition);
    $('users').replaceChildren(...users.users.map((u) => {
      const tr = document.createElement('tr');
      tr.append(cell(u.user + (u.admin ? ' (admin)' : '')), cell(String(u.faces)),
        cell(u.disabled ? 'disabled' : 'active'));
      const actions = document.createElement('td');
      const name = encodeURIComponent(u.user);
      actions.append(
        u.disabled
          ? button(`Enable ${u.user}`, 'secondary', () => api('POST', `/api/v1/admin/users/${name}/enable`))
          : button(`Disable ${u.user}`, 'secondary', () => api('POST', `/api/v1/admin/users/${name}/disable`)),
        button(`Delete ${u.user}`, 'danger', async () => {
          if (window.confirm(`Delete ${u.user} and all their faces?`)) {
            await api('DELETE', `/api/v1/admin/users/${name}`);
          }
        }));
      tr.append(actions);
      return tr;
    }));
    $('audit').replaceChildren(...audit.events.map((e) => {
      const tr = document.createElement('tr');
      tr.append(cell(new Date(e.at_ms).toLocaleString()), cell(e.event), cell(e.actor),
        cell(e.subject), cell(e.address), cell(e.outcome));
      return tr;
    }));
  } catch (e) {
    $('panel').classList.add('hidden');
    if (e.status === 401) $('who').textContent = 'Log in first, as an administrator.';
    else if (e.status === 403) $('who').textContent = 'This page is for administrators.';
    else showError(e.message);
  }
}

$('search').addEventListener('submit', (event) => { event.preventDefault(); load(); });
load();
