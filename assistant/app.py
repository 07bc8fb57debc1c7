"""`salova app`: a gradio page to pick or upload a video, ask about it, and watch the answer stream in, with the
timeline, the focus scenes' thumbnails and spans, and the times of every question asked about that video."""

import io
import queue
import threading
from pathlib import Path

import gradio as gr
import matplotlib.pyplot as plt
from PIL import Image
from salova.assistant.answering import VideoAssistant
from salova.assistant.timeline import draw_timeline


def launch_app(assistant: VideoAssistant, example_videos: list[str], host: str, port: int) -> None:
    # System fonts only: the page must render without reaching any font server.
    theme = gr.themes.Default(font=["Helvetica", "Arial", "sans-serif"], font_mono=["monospace"])
    build_app(assistant, example_videos).launch(server_name=host, server_port=port, theme=theme)


def build_app(assistant: VideoAssistant, example_videos: list[str] | None = None) -> gr.Blocks:
    with gr.Blocks(title="SALOVA", analytics_enabled=False) as app:
        gr.Markdown("## SALOVA: ask a long video\nThe video is encoded once; later questions reuse its index.")
        with gr.Row():
            with gr.Column(scale=2):
                video = gr.Video(label="video", sources=["upload"], elem_id="video")
                if example_videos:
                    gr.Examples(example_videos, inputs=video, label="videos")
                question = gr.Textbox(label="question", elem_id="question", lines=2)
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column(scale=3):
                answer = gr.Textbox(label="answer", elem_id="answer", lines=3, interactive=False)
                times = gr.Markdown(elem_id="times")
        timeline = gr.Image(elem_id="timeline", type="pil", interactive=False, show_label=False)
        thumbnails = gr.Gallery(
            label="focus scenes (router scores on the timeline)",
            elem_id="thumbnails",
            columns=5,
            height=240,
            object_fit="contain",
        )
        history = gr.State([])

        def answer_question(video_path, question_text, asked):
            if not video_path:
                raise gr.Error("Pick or upload a video first.")
            if not question_text or not question_text.strip():
                raise gr.Error("Type a question about the video.")
            asked = [row for row in asked if row["video"] == video_path]
            index, status, seconds = assistant.open(video_path, progress=False)
            pieces: queue.Queue = queue.Queue()
            result = {}

            def run():
                try:
                    messages = assistant.conversation(video_path, [question_text.strip()], [])
                    result["answer"] = assistant.ask(
                        index, messages, on_text=pieces.put, index_status=status, index_seconds=seconds
                    )
                except Exception as error:  # shown on the page
                    result["error"] = error
                pieces.put(None)

            threading.Thread(target=run, daemon=True).start()
            text = ""
            while (piece := pieces.get()) is not None:
                text += piece
                yield text, gr.skip(), gr.skip(), gr.skip(), asked
            if "error" in result:
                raise gr.Error(str(result["error"]))
            response = result["answer"]
            asked = [
                *asked,
                {"video": video_path, "question": question_text.strip(), **response.seconds, "status": response.index},
            ]
            gallery = [(index.thumbnails[scene.index].numpy(), scene.span) for scene in response.focus_scenes]
            yield response.text, _timeline_image(response, index, question_text), gallery, _times(asked), asked

        ask.click(
            answer_question,
            inputs=[video, question, history],
            outputs=[answer, timeline, thumbnails, times, history],
        )
    return app


def _timeline_image(answer, index, question: str) -> Image.Image:
    figure = draw_timeline(answer, index, question)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    buffer.seek(0)
    return Image.open(buffer)


def _times(asked: list[dict]) -> str:
    rows = [
        f"| {number} | {row['question']} | {row['status']} | {row['index']:.2f} | {row['first_token']:.2f} | "
        f"{row['total']:.2f} |"
        for number, row in enumerate(asked, 1)
    ]
    header = "| # | question | index | index s | first token s | total s |\n|---|---|---|---|---|---|"
    return f"**{Path(asked[-1]['video']).name}**\n\n{header}\n" + "\n".join(rows)
