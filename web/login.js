import { $, api, Camera, showError, streamFrames } from './app.js';

let cancelled = false;
let current = null;  // the attempt in progress: { id, nonce }

$('start').addEventListener('submit', async (event) => {
  event.preventDefault();
  showError('');
  cancelled = false;
  const user = $('user').value.trim();
  const camera = new Camera($('video'), $('overlay'));
  try {
    const request = user ? { user, session: 'cookie' } : { session: 'cookie' };
    const attempt = await api('POST', '/api/v1/login/attempts', request);
    current = attempt;
    $('start').classList.add('hidden');
    $('capture').classList.remove('hidden');
    $('guidance').textContent = 'Starting the camera…';
    await camera.start();
    const last = await streamFrames(camera, `/api/v1/login/attempts/${attempt.id}/frames`,
      { 'X-Attempt-Nonce': attempt.nonce }, (f) => f.state !== 'pending', () => cancelled);
    camera.stop();
    if (!last) return;
    if (last.state === 'accepted') {
      $('guidance').textContent = `Welcome, ${last.session.user}.`;
      window.location.href = '/account';
      return;
    }
    throw new Error(`Not logged in: ${last.advice}`);
  } catch (e) {
    camera.stop();
    $('capture').classList.add('hidden');
    $('start').classList.remove('hidden');
    showError(e.message);
  }
});

$('cancel').addEventListener('click', () => {
  cancelled = true;
  // Tell the server, so that an attempt that judged no face yet costs nothing (one that did
  // still counts as a failure). If a frame is in flight the server says so and lets the
  // attempt expire instead.
  if (current) {
    api('DELETE', `/api/v1/login/attempts/${current.id}`, undefined,
      { 'X-Attempt-Nonce': current.nonce }).catch(() => {});
    current = null;
  }
  $('capture').classList.add('hidden');
  $('start').classList.remove('hidden');
});

$('recovery-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  showError('');
  try {
    await api('POST', '/api/v1/login/recovery', {
      user: $('recovery-user').value.trim(), code: $('recovery-code').value.trim(), session: 'cookie',
    });
    window.location.href = '/account';
  } catch (e) {
    showError(e.message);
  }
});
