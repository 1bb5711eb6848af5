// Shared code of the facelogin pages: API calls, the camera, and the frame loop that streams
// frames to an enrolment or a login attempt and shows the server's feedback.

export const $ = (id) => document.getElementById(id);

let csrf = null;

// Calls the JSON API. Throws an Error whose message is the server's, with .code and .status.
export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin' };
  if (body instanceof Blob) {
    init.body = body;
    init.headers['Content-Type'] = body.type;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  if (csrf && method !== 'GET') init.headers['X-CSRF-Token'] = csrf;
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error?.message || `HTTP ${response.status}`);
    error.code = data.error?.code;
    error.status = response.status;
    error.retryAfter = Number(response.headers.get('Retry-After') || 0);
    throw error;
  }
  if (data.csrf) csrf = data.csrf;
  if (data.session?.csrf) csrf = data.session.csrf;
  return data;
}

export function showError(message) {
  $('error').textContent = message || '';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The user's camera in `video`; frames are JPEGs cut from it.
export class Camera {
  constructor(video, overlay) {
    this.video = video;
    this.overlay = overlay;
    this.canvas = document.createElement('canvas');
    this.stream = null;
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error('This browser cannot use a camera here (it needs HTTPS or localhost). Use your recovery code instead.');
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: 'user' }, audio: false,
      });
    } catch (e) {
      throw new Error(`The camera is not available (${e.name}). Allow camera access, or use your recovery code.`);
    }
    this.video.srcObject = this.stream;
    await this.video.play();
    while (!this.video.videoWidth) await sleep(50);
  }

  stop() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
  }

  async frame() {
    const { videoWidth: w, videoHeight: h } = this.video;
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.getContext('2d').drawImage(this.video, 0, 0, w, h);
    return new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', 0.9));
  }

  // The text alternative of the overlay: where the face is and whether it is usable (the view
  // is mirrored, so the person's left is the picture's left as they see it).
  describe(feedback, width) {
    const view = document.getElementById('camera-view');
    if (!view) return;
    let text = 'no face in view';
    if (feedback.box) {
      const centre = (feedback.box.x + feedback.box.width / 2) / width;
      const where = centre < 0.35 ? 'to the right' : centre > 0.65 ? 'to the left' : 'in the middle';
      text = `face ${where}, ${feedback.outcome === 'ok' ? 'usable' : 'not usable yet'}`;
    }
    view.setAttribute('aria-label', `Camera view: ${text}`);
  }

  // Draws the face box the server found (frame pixels), green when usable.
  draw(feedback) {
    const o = this.overlay;
    o.width = feedback.frame?.width || this.video.videoWidth;
    o.height = feedback.frame?.height || this.video.videoHeight;
    const ctx = o.getContext('2d');
    ctx.clearRect(0, 0, o.width, o.height);
    const box = feedback.box;
    this.describe(feedback, o.width);
    if (!box) return;
    ctx.lineWidth = Math.max(3, o.width / 160);
    ctx.strokeStyle = feedback.outcome === 'ok' ? '#2ecc40' : '#ff851b';
    ctx.strokeRect(box.x, box.y, box.width, box.height);
  }
}

// The challenge's prompt (a login under the active liveness policy, or one the adaptive policy
// stepped up to it in the middle of the attempt): the move asked for
// now, and which step of how many. Hidden when there is no challenge or the attempt is over.
function showChallenge(challenge, state) {
  const el = document.getElementById('challenge');
  if (!el) return;
  if (!challenge || state !== 'pending') {
    el.classList.add('hidden');
    el.textContent = '';
    return;
  }
  const step = Math.min(challenge.steps_done + 1, challenge.steps);
  el.textContent = `Step ${step} of ${challenge.steps}: ${challenge.prompt}`;
  el.dataset.action = challenge.action || '';
  el.classList.remove('hidden');
}

// Sends frames to `url` until `done(feedback)` says stop; shows guidance and progress.
// Returns the last feedback. Paces itself to about 8 frames a second.
export async function streamFrames(camera, url, headers, done, isCancelled) {
  for (;;) {
    if (isCancelled()) return null;
    const started = performance.now();
    const blob = await camera.frame();
    let feedback;
    try {
      feedback = await api('POST', url, blob, headers);
    } catch (e) {
      if (e.status === 503) {  // the server is busy: wait as it asks, then go on
        await sleep(1000 * (e.retryAfter || 1));
        continue;
      }
      throw e;
    }
    camera.draw(feedback);
    const guidance = $('guidance');
    const advice = feedback.advice || feedback.message || '';
    // The challenge's prompt has its own line; the guidance then says only what else to fix.
    guidance.textContent = feedback.challenge && advice === feedback.challenge.prompt ? '' : advice;
    guidance.className = 'guidance' + (feedback.state === 'rejected' ? ' bad' : '');
    if (typeof feedback.progress === 'number') $('progress').value = feedback.progress;
    showChallenge(feedback.challenge, feedback.state);
    if (done(feedback)) return feedback;
    const elapsed = performance.now() - started;
    if (elapsed < 120) await sleep(120 - elapsed);
  }
}
