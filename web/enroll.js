import { $, api, Camera, showError, streamFrames } from './app.js';

let cancelled = false;

$('start').addEventListener('submit', async (event) => {
  event.preventDefault();
  showError('');
  cancelled = false;
  const user = $('user').value.trim();
  const camera = new Camera($('video'), $('overlay'));
  try {
    const enrolment = await api('POST', '/api/v1/enrollments', { user, session: 'cookie' });
    $('start').classList.add('hidden');
    $('capture').classList.remove('hidden');
    $('guidance').textContent = 'Starting the camera…';
    await camera.start();
    const last = await streamFrames(camera, `/api/v1/enrollments/${enrolment.id}/frames`, {},
      (f) => f.ready || f.state === 'rejected', () => cancelled);
    camera.stop();
    if (!last) return;
    if (last.state === 'rejected') {
      throw new Error(`${last.advice} Start again when ready.`);
    }
    $('guidance').textContent = 'Saving your face…';
    const result = await api('POST', `/api/v1/enrollments/${enrolment.id}/finish`);
    $('capture').classList.add('hidden');
    $('recovery').textContent = result.recovery_code;
    $('done').classList.remove('hidden');
    $('saved').focus();
  } catch (e) {
    camera.stop();
    $('capture').classList.add('hidden');
    $('start').classList.remove('hidden');
    showError(e.message);
  }
});

$('cancel').addEventListener('click', () => {
  cancelled = true;
  $('capture').classList.add('hidden');
  $('start').classList.remove('hidden');
});

$('saved').addEventListener('click', () => { window.location.href = '/account'; });
