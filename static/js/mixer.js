// The job page's mixer: the stems' <audio> elements played as one song. One transport (play,
// pause, a seek bar over the stems' waveforms, the time), a volume, mute and solo per stem, and
// the "Download this mix" form's gains kept in step with them.
//
// Each stem streams through its own media element (byte ranges from the server), so nothing is
// decoded whole and memory stays flat for a two-hour song. The first stem is the clock: every
// 100 ms the others are compared with it; a stem more than 5 ms adrift is nudged by its playback
// rate (the browser keeps the pitch) and one more than 250 ms off is moved outright. After a seek
// all stems wait until each has seeked and buffered enough to play, then start together.
//
// Keys: Space plays or pauses (anywhere on the page but in a text field or on a button); the
// left and right arrows move 5 seconds (on the page or the seek bar).
(function () {
  var NUDGE_SECONDS = 0.005;
  var JUMP_SECONDS = 0.25;
  var CHECK_MS = 100;
  var STEP_SECONDS = 5;

  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds || 0));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + pad(m) + ":" + pad(s) : m + ":" + pad(s);
  }

  // Seeked and with enough data to play on: stems that start together then stay together (one
  // still waiting for its bytes would start late).
  function ready(audio) {
    return new Promise(function (resolve) {
      function check() {
        if (!audio.seeking && audio.readyState >= 3) {
          audio.removeEventListener("seeked", check);
          audio.removeEventListener("canplay", check);
          resolve();
        }
      }
      audio.addEventListener("seeked", check);
      audio.addEventListener("canplay", check);
      check();
    });
  }

  function Mixer(root) {
    var self = this;
    this.root = root;
    this.duration = parseFloat(root.dataset.duration) || 0;
    this.stems = Array.prototype.map.call(root.querySelectorAll("article.stem"), function (article) {
      var audio = article.querySelector("audio");
      audio.removeAttribute("controls"); // the transport plays them all
      audio.preload = "auto";
      article.querySelectorAll("[hidden]").forEach(function (element) { element.hidden = false; });
      return {
        name: article.dataset.stem,
        audio: audio,
        volume: article.querySelector('[data-control="volume"]'),
        mute: article.querySelector('[data-control="mute"]'),
        solo: article.querySelector('[data-control="solo"]'),
        gain: article.querySelector('[data-control="gain"]'),
      };
    });
    this.master = this.stems[0].audio;
    this.playing = false;
    this.button = root.querySelector('[data-action="play"]');
    this.seekBar = root.querySelector("input.seek");
    this.timeLabel = root.querySelector("[data-time]");
    this.playhead = root.querySelector(".playhead");
    root.querySelectorAll(".transport, .overview").forEach(function (element) { element.hidden = false; });

    this.button.addEventListener("click", function () { self.toggle(); });
    this.seekBar.addEventListener("input", function () { self.seek(parseFloat(self.seekBar.value)); });
    this.seekBar.addEventListener("keydown", function (event) {
      if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
        event.preventDefault();
        event.stopPropagation();
        self.step(event.key === "ArrowLeft" ? -STEP_SECONDS : STEP_SECONDS);
      }
    });
    this.stems.forEach(function (stem) {
      stem.volume.addEventListener("input", function () { self.applyLevels(); });
      [stem.mute, stem.solo].forEach(function (button) {
        button.addEventListener("click", function () {
          button.setAttribute("aria-pressed", button.getAttribute("aria-pressed") === "true" ? "false" : "true");
          self.applyLevels();
        });
      });
    });
    this.master.addEventListener("ended", function () { self.pause(); });
    this.applyLevels();
    setInterval(function () { self.keepInStep(); }, CHECK_MS);
    requestAnimationFrame(function frame() { self.draw(); requestAnimationFrame(frame); });
  }

  Mixer.prototype.applyLevels = function () {
    var anySolo = this.stems.some(function (stem) { return stem.solo.getAttribute("aria-pressed") === "true"; });
    this.stems.forEach(function (stem) {
      var silenced = stem.mute.getAttribute("aria-pressed") === "true" ||
        (anySolo && stem.solo.getAttribute("aria-pressed") !== "true");
      var level = silenced ? 0 : parseFloat(stem.volume.value);
      stem.audio.volume = level;
      stem.gain.value = String(level); // what "Download this mix" renders
    });
  };

  Mixer.prototype.time = function () { return this.master.currentTime; };

  Mixer.prototype.play = function () {
    var self = this;
    var at = this.time();
    this.stems.forEach(function (stem) {
      // Only a stem off the clock seeks: a seek to where it already is (as after seek()) would
      // still drop its buffer and make it start late.
      if (stem.audio !== self.master && Math.abs(stem.audio.currentTime - at) > 0.001) stem.audio.currentTime = at;
    });
    return Promise.all(this.stems.map(function (stem) { return ready(stem.audio); })).then(function () {
      self.playing = true;
      self.button.textContent = "Pause";
      self.button.setAttribute("aria-pressed", "true");
      self.stems.forEach(function (stem) { stem.audio.playbackRate = 1; });
      return Promise.all(self.stems.map(function (stem) { return stem.audio.play(); }));
    });
  };

  Mixer.prototype.pause = function () {
    this.playing = false;
    this.stems.forEach(function (stem) { stem.audio.pause(); stem.audio.playbackRate = 1; });
    this.button.textContent = "Play";
    this.button.setAttribute("aria-pressed", "false");
  };

  Mixer.prototype.toggle = function () {
    if (this.playing) this.pause();
    else this.play();
  };

  Mixer.prototype.seek = function (seconds) {
    var self = this;
    var wasPlaying = this.playing;
    var target = Math.min(Math.max(seconds, 0), this.duration);
    this.stems.forEach(function (stem) { stem.audio.pause(); stem.audio.playbackRate = 1; });
    this.stems.forEach(function (stem) { stem.audio.currentTime = target; });
    this.playing = false;
    return Promise.all(this.stems.map(function (stem) { return ready(stem.audio); })).then(function () {
      if (wasPlaying) return self.play();
    });
  };

  Mixer.prototype.step = function (seconds) { return this.seek(this.time() + seconds); };

  // Corrections wait until every stem plays: while one is still starting (or waits for data) the
  // others' lead is not drift, and nudging them then would overshoot once it starts.
  function running(audio) { return audio.ended || (!audio.paused && !audio.seeking && audio.readyState >= 3); }

  Mixer.prototype.keepInStep = function () {
    if (!this.playing || !this.stems.every(function (stem) { return running(stem.audio); })) return;
    var at = this.master.currentTime;
    this.stems.forEach(function (stem) {
      var audio = stem.audio;
      if (audio === this.master || audio.seeking || audio.ended) return;
      var ahead = audio.currentTime - at;
      if (Math.abs(ahead) > JUMP_SECONDS) audio.currentTime = at;
      // Half the gap closes in each check (100 ms): 20 ms off plays 10 % faster or slower for a
      // moment (the browser keeps the pitch).
      else if (Math.abs(ahead) > NUDGE_SECONDS) audio.playbackRate = 1 - Math.max(-0.2, Math.min(0.2, 5 * ahead));
      else audio.playbackRate = 1;
    }, this);
  };

  Mixer.prototype.draw = function () {
    var at = this.time();
    this.timeLabel.textContent = clock(at);
    if (document.activeElement !== this.seekBar) this.seekBar.value = String(at);
    this.seekBar.setAttribute("aria-valuetext", clock(at) + " of " + clock(this.duration));
    if (this.duration) this.playhead.style.left = (100 * at / this.duration) + "%";
  };

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT|BUTTON|A)$/.test(target.tagName)) &&
      !(target.tagName === "INPUT" && target.type === "range");
  }

  var current = null;
  function start() {
    var root = document.getElementById("mixer");
    if (!root || root.dataset.ready) return;
    root.dataset.ready = "1";
    current = new Mixer(root);
    window.stemMixer = current; // for the browser test's drift measurements
  }
  document.addEventListener("keydown", function (event) {
    if (!current || !document.body.contains(current.root) || typing(event.target)) return;
    if (event.key === " ") {
      event.preventDefault();
      current.toggle();
    } else if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && event.target === document.body) {
      event.preventDefault();
      current.step(event.key === "ArrowLeft" ? -STEP_SECONDS : STEP_SECONDS);
    }
  });
  document.addEventListener("partial:replaced", start);
  start();
})();
