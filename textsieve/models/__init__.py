"""Networks: teacher (VGG16 or frozen PP-OCRv4 trunk) and student, both ending in a region head."""

from textsieve.models.head import RegionOutput, count_params
from textsieve.models.student import StudentNet
from textsieve.models.teacher import TeacherNet

__all__ = ["RegionOutput", "StudentNet", "TeacherNet", "count_params"]
